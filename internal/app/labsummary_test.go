package app

import (
	"strings"
	"testing"
)

// proves: O1 (issue 14 item 9: `groupvpn lab --members 50` printed 564
// lines; a lab above 10 members now prints the first and last rows, the
// counts and the address range, and says how to see every member)
func TestLabSummarisesLargeLab(t *testing.T) {
	code, out, errs := run(t, "", "lab", "--members", "50", "--port", "25848", "--base", "127.0.41.0", "--dir", t.TempDir())
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errs, out)
	}
	if n := strings.Count(out, "\n"); n > 80 {
		t.Errorf("%d lines for 50 members, want at most 80:\n%s", n, out)
	}
	for _, w := range []string{
		"50 group members 127.0.41.1 to 127.0.41.50",
		"… 48 more member sections (groupvpn lab --all",
		"Group Member ID    : 127.0.41.50",
		"  gm3    127.0.41.3   registered",
		"  … 44 more members (groupvpn lab --all lists every member) …\n  gm48   127.0.41.48",
		"  50 members, 127.0.41.1 to 127.0.41.50: 50 registered; 1 KEK(s), 1 distinct TEK set(s) among them",
		"  50 members: 0 drops in all",
		"700 of 700 packets delivered",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("lab output lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "gm25 ") || strings.Contains(out, "127.0.41.25 ") {
		t.Errorf("a summarised lab lists gm25:\n%s", out)
	}
}

// proves: O1 (issue 14 item 9: --all lists every member; --base places
// the members, and a base that is not loopback, has no room or meets the
// key server's /24 is refused)
func TestLabAddressBaseAndAll(t *testing.T) {
	code, out, errs := run(t, "", "lab", "--members", "12", "--all", "--port", "25849", "--base", "127.0.42.0", "--dir", t.TempDir())
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errs, out)
	}
	for _, w := range []string{"Group Member ID    : 127.0.42.7 ", "  gm7    127.0.42.7   registered", "  gm12   127.0.42.12  registered"} {
		if !strings.Contains(out, w) {
			t.Errorf("lab --all --base output lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "more members") || strings.Contains(out, "127.0.2.") {
		t.Errorf("lab --all summarised, or used the default base:\n%s", out)
	}
	for _, c := range []struct{ base, members, want string }{
		{"10.0.0.0", "3", "not an IPv4 loopback address"},
		{"127.0.9.5", "3", "must end in .0"},
		{"127.0.255.0", "300", "no room for 300 members"},
		{"127.0.0.0", "300", "share 127.0.1.0/24 with the key server"},
		{"nonsense", "3", "--base"},
	} {
		code, _, errs := run(t, "", "lab", "--members", c.members, "--base", c.base)
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("--base %s --members %s: exit %d, %q (want %q)", c.base, c.members, code, errs, c.want)
		}
	}
}
