package app

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// proves: G2, G4 (issue 17: lab --protocol gikev2): the key server and 8
// members are ikev2d routers configured from IOS-XE G-IKEv2 files the lab
// renders (gikev2 PROFILE under server local, client protocol gikev2
// PROFILE on the members); every member registers with IKE_SA_INIT +
// GSA_AUTH over UDP on 127.0.0.0/8 and its ESP engine gets the TEKs it
// received: every packet between the members is delivered, only ESP for
// the group's TEKs crosses the sockets; then a rekey (GSA_REKEY) under
// numbered traffic reaches all 8 with 0 packets lost, and once its
// activation delay has passed (the engines' clock moved ahead) every
// packet is encapsulated with the new TEKs and delivered.
func TestLabGIKEv2(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := run(t, "", "lab", "--protocol", "gikev2", "--members", "8", "--port", "29958", "--base", "127.0.44.0", "--dir", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errs, out)
	}
	for _, w := range []string{
		"G-IKEv2 (RFC 9838): key server 127.0.1.1:29958 and 8 group members 127.0.44.1 to 127.0.44.8",
		"all 8 members registered in",
		"(IKE_SA_INIT + GSA_AUTH each, over real UDP)",
		"ks# show crypto gdoi ks members",
		"112 of 112 packets delivered",
		`and the plaintext marker "groupvpn-lab-plaintext" appeared in 0 of them.`,
		"applied by 8 of 8 members",
		"; 0 packets lost.",
		// Past the rekey's ATD every packet goes on the new TEKs.
		"clock moved 31s ahead): 112 of 112 packets delivered,\n112 of them encapsulated with the new TEKs, 0 with the old ones; the plaintext marker crossed the sockets 0 times.",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("lab output lacks %q:\n%s", w, out)
		}
	}
	if n := strings.Count(out, "  Group Member ID : 127.0.44."); n != 8 {
		t.Errorf("the key server lists %d members, want 8:\n%s", n, out)
	}
	if n := len(regexp.MustCompile(`(?m)^  gm\d+ +127\.0\.44\.\d+ +registered +0 +0x`).FindAllString(out, -1)); n != 8 {
		t.Errorf("%d members registered with TEKs in the table, want 8:\n%s", n, out)
	}
	// The traffic table's SPIs are the ones sent with; the rekey's are new.
	first := regexp.MustCompile(`ESP for the group's TEKs \(SPIs (0x[0-9a-f]{8}), (0x[0-9a-f]{8})\)`).FindStringSubmatch(out)
	newer := regexp.MustCompile(`new TEKs (0x[0-9a-f]{8}), (0x[0-9a-f]{8}) applied`).FindStringSubmatch(out)
	if first == nil || newer == nil {
		t.Fatalf("no SPIs in the output:\n%s", out)
	}
	for _, s := range newer[1:] {
		if s == first[1] || s == first[2] {
			t.Errorf("the rekey's TEK %s is an old one (%v)", s, first[1:])
		}
	}
	if m := regexp.MustCompile(`(\d+) packets sent, (\d+) lost`).FindStringSubmatch(out); m == nil || m[1] == "0" || m[2] != "0" {
		t.Errorf("live traffic over the rekey: %v\n%s", m, out)
	}
	// The nodes ran the IOS-XE G-IKEv2 configuration the lab rendered.
	for file, want := range map[string]string{"ks.conf": " gikev2 lab-members\n", "gm1.conf": " client protocol gikev2 lab-ks\n"} {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil || !strings.Contains(string(b), want) || !strings.Contains(string(b), "crypto ikev2 profile") {
			t.Errorf("%s (%v) lacks %q:\n%s", file, err, want, b)
		}
	}
}

// proves: G4 (issue 17: lab --protocol gikev2): gdoi is the default; COOP
// (--key-servers 2) is refused with G-IKEv2, naming why; an unknown
// protocol is refused.
func TestLabProtocolRefusals(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--protocol", "gikev2", "--key-servers", "2"}, "COOP, --key-servers) speak IKEv1 (GDOI) only, G-IKEv2 has no COOP"},
		{[]string{"--protocol", "ikev3"}, `--protocol "ikev3": gdoi or gikev2`},
		{[]string{"--protocol", "gikev2", "--old", "1"}, "--old is for GDOI members"},
	} {
		code, _, errs := run(t, "", append([]string{"lab"}, c.args...)...)
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("lab %v: exit %d, %q (want %q)", c.args, code, errs, c.want)
		}
	}
}
