package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// proves: O1
func TestConfigCheckAcceptsTheExamples(t *testing.T) {
	for file, role := range map[string]string{
		"../policy/testdata/ks.conf": "key server for GETVPN-A (identity 1234, 1 sa ipsec, rekey multicast)",
		"../policy/testdata/gm.conf": "group member of GETVPN-A (identity 1234, key servers 10.0.0.1 10.0.0.2, on eth0)",
	} {
		code, out, errs := run(t, "", "config", "check", file)
		if code != 0 || errs != "" {
			t.Fatalf("%s: exit %d, stderr:\n%s", file, code, errs)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		// Where each rekey key was found (issue 14 item 2) comes first.
		if strings.HasPrefix(role, "key server") {
			if len(lines) == 0 || !strings.Contains(lines[0], "rekey authentication mypubkey rsa GETVPN-REKEY: RSA 2048 key from crypto key import, line 25 (file ks-rekey.pem)") {
				t.Errorf("%s: the rekey key's origin is not said first:\n%s", file, out)
			}
			lines = lines[1:]
		}
		if len(lines) != 2 || lines[0] != file+": OK" || !strings.Contains(lines[1], role) {
			t.Errorf("%s: stdout:\n%s", file, out)
		}
	}
}

// proves: O1
func TestConfigCheckReportsEveryError(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "bad.conf")
	src := "hostname r1\ncrypto gdoi group G\n identity number 0\n server local\n  rekey algorthm aes 128\n"
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run(t, "", "config", "check", file)
	if code != 1 || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	want := []string{
		file + ":2: crypto gdoi group G: identity number is required",
		file + ":2: crypto gdoi group G: registration needs phase 1, but no crypto isakmp policy is configured",
		file + ":3: identity number 0 is out of range (accepted: 1-4294967295)",
		file + ":4: crypto gdoi group G: server local has no sa ipsec; a key server needs at least one",
		file + `:5: unknown command "rekey algorthm" in crypto gdoi group server local mode; did you mean "rekey algorithm"?`,
		file + ": configuration refused",
	}
	if got := strings.Split(strings.TrimSuffix(errs, "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stderr:\n%s\nwant:\n%s", errs, strings.Join(want, "\n"))
	}
}

// proves: O1
func TestConfigCheckUsageAndMissingFile(t *testing.T) {
	if code, _, errs := run(t, "", "config"); code != 2 || !strings.Contains(errs, "config check FILE") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if code, _, errs := run(t, "", "config", "check", "/nonexistent/x.conf"); code != 1 || !strings.Contains(errs, "/nonexistent/x.conf: cannot read: no such file or directory") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if code, out, _ := run(t, "", "help"); code != 0 || !strings.Contains(out, "validate a configuration file (config check FILE)") {
		t.Fatalf("help lacks config:\n%s", out)
	}
}

// proves: O1 (issue 11 item 3) — `crypto ipsec transform-set t1 esp-hmac`
// (or ah-hmac) printed a stack trace; now each is a file:line error and
// config check exits 1.
func TestConfigCheckHMACWithoutAlgorithm(t *testing.T) {
	file := filepath.Join(t.TempDir(), "typo.conf")
	if err := os.WriteFile(file, []byte("crypto ipsec transform-set t1 esp-hmac\ncrypto ipsec transform-set t2 ah-hmac\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run(t, "", "config", "check", file)
	if code != 1 || out != "" || strings.Contains(errs, "goroutine") || strings.Contains(errs, "panic") {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, out, errs)
	}
	for _, want := range []string{file + `:1: crypto ipsec transform-set t1: transform "esp-hmac" is not supported`,
		file + `:2: crypto ipsec transform-set t2: transform "ah-hmac" is not supported`, file + ": configuration refused"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}

// proves: O1 (issue 14 item 2: `config check` of a pasted IOS GM
// configuration accepts it and prints what groupvpn does not use as
// FILE:LINE: note: lines before OK)
func TestConfigCheckPrintsNotes(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "gm.conf")
	src := "Building configuration...\n\nCurrent configuration : 812 bytes\n!\nversion 15.4\nhostname GM1\n" +
		"crypto isakmp policy 10\n encr aes 256\n hash sha256\n authentication pre-share\n group 14\n" +
		"crypto isakmp key k1 address 10.0.0.1\n" +
		"crypto gdoi group G\n identity number 1\n server address ipv4 10.0.0.1\n" +
		"crypto map M local-address GigabitEthernet0/0\ncrypto map M 10 gdoi\n set group G\n" +
		"interface GigabitEthernet0/0\n description WAN\n ip address 10.1.1.1 255.255.255.0\n crypto map M\nend\n"
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run(t, "", "config", "check", file)
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr:\n%s", code, errs)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := []string{
		file + `:1: note: "Building configuration..." not used by groupvpn (a show running-config header)`,
		file + `:3: note: "Current configuration : 812 bytes" not used by groupvpn (a show running-config header)`,
		file + `:5: note: "version 15.4" not used by groupvpn`,
		file + `:16: note: "crypto map M local-address GigabitEthernet0/0" not used by groupvpn`,
		file + `:20: note: "description WAN" not used by groupvpn (a comment)`,
		file + `:21: note: "ip address 10.1.1.1 255.255.255.0" not used by groupvpn`,
		file + ": OK",
	}
	if len(lines) != len(want)+1 {
		t.Fatalf("stdout:\n%s", out)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d: %q, want prefix %q", i+1, lines[i], w)
		}
	}
}
