package app

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(&Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb}, args)
	return code, out.String(), errb.String()
}

func TestDecodeGoldenFromStdin(t *testing.T) {
	hexText, err := os.ReadFile("../../isakmp/testdata/pull4.hex")
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := run(t, string(hexText), "decode")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, w := range []string{"GROUPKEY-PULL", "SEQ 7", "KD 4 key packets", "SID_VALUE"} {
		if !strings.Contains(out, w) {
			t.Errorf("decode output lacks %q:\n%s", w, out)
		}
	}
}

func TestDecodeRefusesGarbageWithReason(t *testing.T) {
	code, _, errs := run(t, "", "decode", "0011")
	if code != 1 || !strings.Contains(errs, "header") || !strings.Contains(errs, "truncated") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	code, _, errs = run(t, "", "decode", "zz")
	if code != 1 || !strings.Contains(errs, "not hex") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}

// proves: groundwork (the lab) — `groupvpn lab` starts a KS and N GMs from
// generated configs, every GM registers over real UDP, and the KS member
// table and each member's SAs are printed.
// proves: E1 (issue 12: the lab runs the ESP engine without root) — and
// the members' engines then protect and deliver synthetic traffic.
func TestLabRegistersEveryMember(t *testing.T) {
	code, out, errs := run(t, "", "lab", "--members", "3", "--port", "20848", "--dir", t.TempDir())
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errs, out)
	}
	for _, w := range []string{"3/3 group members registered", "show crypto gdoi ks members",
		"Group Member ID    : 127.0.2.3", "gm3    127.0.2.3    registered", "aes-gcm", "aes-cbc",
		"12 of 12 packets delivered", "12 UDP datagrams crossed the sockets, 12 of them ESP", "appeared in 0 of them"} {
		if !strings.Contains(out, w) {
			t.Errorf("lab output lacks %q:\n%s", w, out)
		}
	}
}

func TestUnknownCommandAndScenario(t *testing.T) {
	if code, _, errs := run(t, "", "frobnicate"); code != 2 || !strings.Contains(errs, "groupvpn help") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if code, _, errs := run(t, "", "bench", "nope"); code != 2 || !strings.Contains(errs, "codec") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if code, out, _ := run(t, "", "help"); code != 0 || !strings.Contains(out, "decode") {
		t.Fatalf("help: exit %d\n%s", code, out)
	}
}

// proves: D1 (the verbs work under their plain names, as `make install` links them)
func TestArgsFromLinkName(t *testing.T) {
	for _, c := range []struct {
		argv []string
		want string
	}{
		{[]string{"/usr/local/bin/groupvpn", "lssrc", "-a"}, "lssrc -a"},
		{[]string{"/usr/local/bin/lssrc", "-g", "ike"}, "lssrc -g ike"},
		{[]string{"startsrc", "-s", "tmd"}, "startsrc -s tmd"},
		{[]string{"./groupvpn"}, ""},
	} {
		if got := strings.Join(Args(c.argv), " "); got != c.want {
			t.Errorf("Args(%q) = %q, want %q", c.argv, got, c.want)
		}
	}
}
