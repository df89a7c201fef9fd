package keystore

import (
	"crypto"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func gen(t *testing.T, typ string, bits int) *Key {
	t.Helper()
	s, err := Generate(typ, bits, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &Key{Signer: s, Type: typ}
}

// proves: O1 (issue 14 item 2: keys are stored as PKCS#8 PEM, mode 0600
// in a 0700 directory, read back equal; no temporary file is left)
func TestPutGetList(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "keys")
	st := Open(dir)
	if keys, probs := st.List(); len(keys) != 0 || len(probs) != 0 {
		t.Fatalf("an absent store lists %v %v", keys, probs)
	}
	ec := gen(t, "ec", 384)
	k, err := st.Put("GETVPN-REKEY.ec", ec.Signer)
	if err != nil {
		t.Fatal(err)
	}
	if k.Type != "ec" || k.Bits != 384 || !k.Signer.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(ec.Signer.Public()) {
		t.Fatalf("read back %+v", k)
	}
	b, err := os.ReadFile(filepath.Join(dir, "GETVPN-REKEY.ec.pem"))
	if err != nil || !strings.HasPrefix(string(b), "-----BEGIN PRIVATE KEY-----\n") {
		t.Fatalf("file: %v %q", err, b)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, k.Path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %04o (%v)", p, fi.Mode().Perm(), want, err)
		}
	}
	if _, err := st.Put("R", gen(t, "rsa", 2048).Signer); err != nil {
		t.Fatal(err)
	}
	keys, probs := st.List()
	if len(keys) != 2 || keys[0].Label != "GETVPN-REKEY.ec" || keys[1].Label != "R" || keys[1].Bits != 2048 || len(probs) != 0 {
		t.Errorf("List = %v %v", keys, probs)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("directory holds %d entries, want 2 (no temporary files)", len(ents))
	}
	if err := st.Delete("R"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get("R"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after Delete: %v", err)
	}
	if err := st.Delete("R"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete: %v", err)
	}
}

// proves: O1 (issue 14 item 2: a label is hostile input: path traversal,
// separators, control characters, hidden names and over-long labels are
// refused before any file is touched)
func TestHostileLabels(t *testing.T) {
	root := t.TempDir()
	st := Open(filepath.Join(root, "keys"))
	s := gen(t, "ec", 256).Signer
	for _, l := range []string{"", "..", ".", "../x", "../../etc/passwd", "a/b", "/abs", ".hidden", "-x", "a\x00b", "a\nb", "a b", "ключ", "a\\b", strings.Repeat("a", MaxLabel+1)} {
		if ValidLabel(l) == nil {
			t.Errorf("ValidLabel(%q) = nil", l)
		}
		if _, err := st.Put(l, s); err == nil {
			t.Errorf("Put(%q) accepted", l)
		}
		if _, err := st.Get(l); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q) = %v, want a refusal", l, err)
		}
		if err := st.Delete(l); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Delete(%q) = %v, want a refusal", l, err)
		}
	}
	var n int
	filepath.Walk(root, func(string, os.FileInfo, error) error { n++; return nil })
	if n != 1 {
		t.Errorf("hostile labels created %d files or directories", n-1)
	}
	for _, l := range []string{"K", "GETVPN_REKEY-1", "ks1.example.com", strings.Repeat("a", MaxLabel)} {
		if err := ValidLabel(l); err != nil {
			t.Errorf("ValidLabel(%q) = %v", l, err)
		}
	}
}

// proves: O1 (issue 14 item 2: reads are bounded and refuse what is not
// a private regular file: a symbolic link, a FIFO (without blocking), a
// file others may read, a file larger than MaxKeyFile, a file or store
// directory of another user, a directory others may write into; a weak key)
func TestReadRefusals(t *testing.T) {
	dir := t.TempDir()
	st := Open(dir)
	k := gen(t, "ec", 256)
	pemb, _ := PrivatePEM(k.Signer)
	os.WriteFile(filepath.Join(dir, "target"), pemb, 0o600)
	os.Symlink(filepath.Join(dir, "target"), filepath.Join(dir, "link.pem"))
	syscall.Mkfifo(filepath.Join(dir, "fifo.pem"), 0o600)
	os.WriteFile(filepath.Join(dir, "open.pem"), pemb, 0o644)
	os.WriteFile(filepath.Join(dir, "big.pem"), append(pemb, make([]byte, MaxKeyFile)...), 0o600)
	os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("not a key"), 0o600)
	for label, want := range map[string]string{
		"link": "symbolic link", "fifo": "not a regular file", "open": "mode 0644",
		"big": "larger than", "junk": "no PEM private key",
	} {
		if _, err := st.Get(label); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Get(%s) = %v, want %q", label, err, want)
		}
	}
	if keys, probs := st.List(); len(keys) != 0 || len(probs) != 5 {
		t.Errorf("List: %d keys, problems %v: want each bad file reported", len(keys), probs)
	}
	if _, err := Generate("rsa", 1024, rand.Reader); err == nil || !strings.Contains(err.Error(), "shorter than 2048") {
		t.Errorf("Generate rsa 1024: %v", err)
	}
	if _, err := Generate("ec", 521, rand.Reader); err == nil {
		t.Errorf("Generate ec 521 accepted")
	}
	// A key file planted by another user (its key known to them) is
	// refused: the KS would sign rekeys anyone with that key can forge.
	if os.Geteuid() == 0 {
		good := Open(t.TempDir())
		planted, err := good.Put("P", k.Signer)
		if err != nil {
			t.Fatal(err)
		}
		os.Chown(planted.Path, 65534, 65534)
		if _, err := good.Get("P"); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Errorf("a key file of uid 65534: %v", err)
		}
		os.Chown(planted.Path, 0, 0)
		os.Chown(good.Dir(), 65534, 65534)
		if _, err := good.Get("P"); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Errorf("a key store directory of uid 65534: %v", err)
		}
	}
	os.Chmod(dir, 0o777)
	if _, err := st.Put("K", k.Signer); err == nil || !strings.Contains(err.Error(), "lets others replace keys") {
		t.Errorf("Put into a 0777 directory: %v", err)
	}
	if _, err := st.Get("open"); err == nil || !strings.Contains(err.Error(), "lets others replace keys") {
		t.Errorf("Get from a 0777 directory: %v", err)
	}
	if keys, probs := st.List(); len(keys) != 0 || len(probs) != 1 || !strings.Contains(probs[0].Error(), "lets others replace keys") {
		t.Errorf("List of a 0777 directory: %v %v", keys, probs)
	}
}

// proves: O1 (issue 14 item 2: the Key Data hex is IOS's layout: 8
// groups of 8 upper-case digits a line)
func TestKeyData(t *testing.T) {
	der := make([]byte, 37)
	for i := range der {
		der[i] = byte(i)
	}
	want := "  00010203 04050607 08090A0B 0C0D0E0F 10111213 14151617 18191A1B 1C1D1E1F\n  20212223 24\n"
	if got := KeyData(der, "  "); got != want {
		t.Errorf("KeyData:\n%q\nwant\n%q", got, want)
	}
}

// FuzzParsePrivateKey: no PEM text makes the parser panic; what it
// accepts is a key the store can write and read back.
func FuzzParsePrivateKey(f *testing.F) {
	s, _ := Generate("ec", 256, rand.Reader)
	p, _ := PrivatePEM(s)
	pub, _ := PublicPEM(s.Public())
	f.Add(p)
	f.Add(append(pub, p...))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParsePrivateKey(b)
		if err != nil {
			return
		}
		if _, err := PrivatePEM(k); err != nil {
			t.Fatalf("accepted key cannot be marshalled: %v", err)
		}
	})
}
