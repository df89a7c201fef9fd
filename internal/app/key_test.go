package app

import (
	"crypto"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/keystore"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

// proves: O1 (issue 14 item 2: a key server's first rekey key is made
// before isakmpd can start with it: groupvpn key generates it into the
// store isakmpd's -state implies, config check then finds it there and
// says so; a replacement is asked for, and --answer no keeps the key)
func TestKeyCommandThenConfigCheck(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "isakmpd.db")
	src, err := os.ReadFile("../policy/testdata/ks.conf")
	if err != nil {
		t.Fatal(err)
	}
	// The IOS way: the key is generated, not imported from a file.
	conf := strings.Replace(string(src), "crypto key import rsa GETVPN-REKEY file ks-rekey.pem", "crypto key generate rsa general-keys label GETVPN-REKEY modulus 2048", 1)
	file := filepath.Join(dir, "ks.conf")
	os.WriteFile(file, []byte(conf), 0o600)
	for _, f := range []string{"ks-cert.pem", "ca.pem", "ks-key.pem"} {
		b, err := os.ReadFile(filepath.Join("../policy/testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o600)
	}
	if code, _, errs := run(t, "", "config", "check", "-state", state, file); code != 1 || !strings.Contains(errs, "was generated on IOS") || !strings.Contains(errs, filepath.Join(dir, "keys")) {
		t.Fatalf("before the key exists: exit %d\n%s", code, errs)
	}
	code, out, errs := run(t, "", "key", "-state", state, "-c", "crypto key generate rsa general-keys label GETVPN-REKEY modulus 2048", "-c", "show crypto key mypubkey rsa | include Key name")
	if code != 0 || !strings.Contains(out, "[OK]") || !strings.Contains(out, "Key name: GETVPN-REKEY\n") {
		t.Fatalf("groupvpn key: exit %d\n%s\n%s", code, out, errs)
	}
	if fi, err := os.Stat(filepath.Join(dir, "keys", "GETVPN-REKEY.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the key file: %v %v", fi, err)
	}
	code, out, errs = run(t, "", "config", "check", "-state", state, file)
	if code != 0 || !strings.Contains(out, "rekey authentication mypubkey rsa GETVPN-REKEY: RSA 2048 key from the key store "+filepath.Join(dir, "keys")) ||
		!strings.Contains(out, "note: \"crypto key generate rsa general-keys label GETVPN-REKEY modulus 2048\" not used by groupvpn in a configuration") {
		t.Fatalf("config check with the key: exit %d\n%s\n%s", code, out, errs)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "keys", "GETVPN-REKEY.pem"))
	code, out, _ = run(t, "", "key", "-keys", filepath.Join(dir, "keys"), "--answer", "no", "-c", "crypto key generate rsa label GETVPN-REKEY modulus 2048")
	after, _ := os.ReadFile(filepath.Join(dir, "keys", "GETVPN-REKEY.pem"))
	if code != 0 || !strings.Contains(out, "Do you really want to replace them? [yes/no]: no") || string(before) != string(after) {
		t.Fatalf("replace answered no: exit %d\n%s", code, out)
	}
	// Without an answer a script never blocks: it fails, saying how to answer.
	if code, _, errs := run(t, "", "key", "-keys", filepath.Join(dir, "keys"), "-c", "crypto key zeroize rsa GETVPN-REKEY"); code != 1 || !strings.Contains(errs, "--yes") {
		t.Fatalf("zeroize without an answer: exit %d\n%s", code, errs)
	}
}

// proves: O1 (issue 14 item 2: on a real pseudo-terminal, a PEM key pasted
// at crypto key import ... pem terminal, in one burst as a terminal paste
// arrives, is read line by line to its END line and stored: the same
// public key as the store it was exported from)
func TestKeyImportPastedOnTerminal(t *testing.T) {
	dir := t.TempDir()
	a := keystore.Open(filepath.Join(dir, "a"))
	k, err := keystore.Generate("ec", 384, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Put("SHARED", k); err != nil {
		t.Fatal(err)
	}
	code, export, errs := run(t, "", "key", "-keys", filepath.Join(dir, "a"), "-c", "crypto key export ec SHARED pem terminal")
	if code != 0 {
		t.Fatalf("export: %d %s", code, errs)
	}
	paste := export[strings.Index(export, "-----BEGIN"):]

	master, slave := openPTY(t)
	scr := newPTYScreen(master)
	var errb testnet.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Main(&Env{Stdin: slave, Stdout: slave, Stderr: &errb}, []string{"key", "-keys", filepath.Join(dir, "b")})
		scr.end()
	}()
	at := scr.wait(t, 20*time.Second, 0, "key-store#")
	master.Write([]byte("crypto key import ec SHARED pem terminal\r"))
	at = scr.wait(t, 20*time.Second, at, "on a line by itself.")
	master.Write([]byte(strings.ReplaceAll(paste, "\n", "\r")))
	scr.wait(t, 20*time.Second, at, "% Key pair imported: SHARED (EC P-384)")
	master.Write([]byte("exit\r"))
	select {
	case c := <-done:
		if c != 0 {
			t.Errorf("exit %d: %s", c, errb.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("groupvpn key did not end after exit")
	}
	got, err := keystore.Open(filepath.Join(dir, "b")).Get("SHARED")
	if err != nil || !got.Signer.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
		t.Fatalf("store b: %v", err)
	}
}
