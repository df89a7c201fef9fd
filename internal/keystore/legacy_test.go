package keystore

import (
	"crypto"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

// proves: O1 (issue 14 item 2: a key exported encrypted, as IOS's
// `crypto key export rsa LABEL pem terminal 3des PASSPHRASE` and OpenSSL's
// traditional format write it, imports with its passphrase; OpenSSL, a
// third party, made the files and says which public key they hold; a
// wrong passphrase is refused)
func TestEncryptedPEMFromOpenSSL(t *testing.T) {
	testnet.RequireTools(t, "openssl")
	dir := t.TempDir()
	for _, c := range []struct{ name, args string }{
		{"des3-rsa", "genrsa -traditional -des3 -passout pass:cisco123 -out OUT 2048"},
		{"aes256-rsa", "genrsa -traditional -aes256 -passout pass:cisco123 -out OUT 3072"},
		{"aes128-ec", "ecparam -name prime256v1 -genkey -noout -out OUT"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, c.name+".pem")
			args := strings.Fields(strings.Replace(c.args, "OUT", out, 1))
			if b, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
				t.Fatalf("openssl %s: %v\n%s", c.args, err, b)
			}
			if strings.HasSuffix(c.name, "-ec") { // encrypt the SEC 1 key, traditional format
				enc := out + ".enc"
				if b, err := exec.Command("openssl", "ec", "-in", out, "-aes128", "-passout", "pass:cisco123", "-out", enc).CombinedOutput(); err != nil {
					t.Fatalf("openssl ec: %v\n%s", err, b)
				}
				out = enc
			}
			pubDER, err := exec.Command("openssl", "pkey", "-in", out, "-passin", "pass:cisco123", "-pubout", "-outform", "DER").Output()
			if err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(out)
			if !strings.Contains(string(b), "Proc-Type: 4,ENCRYPTED") {
				t.Fatalf("openssl wrote no legacy encrypted key:\n%s", b)
			}
			if _, err := ParsePrivateKey(b); !errors.Is(err, ErrEncrypted) {
				t.Fatalf("without a passphrase: %v", err)
			}
			if _, err := ParsePrivateKeyPassphrase(b, []byte("cisco124")); err == nil || !strings.Contains(err.Error(), "wrong passphrase") {
				t.Fatalf("wrong passphrase: %v", err)
			}
			k, err := ParsePrivateKeyPassphrase(b, []byte("cisco123"))
			if err != nil {
				t.Fatal(err)
			}
			der, _ := PublicDER(k.Public())
			if string(der) != string(pubDER) {
				t.Fatal("the decrypted key is not the one openssl holds")
			}
			st := Open(filepath.Join(dir, "keys"))
			if _, err := st.Put(c.name, k); err != nil {
				t.Fatal(err)
			}
			got, err := st.Get(c.name)
			if err != nil || !got.Signer.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
				t.Fatalf("stored: %v", err)
			}
		})
	}
	pkcs8 := filepath.Join(dir, "p8.pem")
	if b, err := exec.Command("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-aes256", "-pass", "pass:x", "-out", pkcs8).CombinedOutput(); err != nil {
		t.Fatalf("openssl genpkey: %v\n%s", err, b)
	}
	b, _ := os.ReadFile(pkcs8)
	if _, err := ParsePrivateKeyPassphrase(b, []byte("x")); err == nil || !strings.Contains(err.Error(), "PKCS#8 encrypted keys are not supported") {
		t.Errorf("PKCS#8 encrypted: %v", err)
	}
}

// FuzzParsePrivateKeyPassphrase: no PEM text or passphrase makes the
// decryption panic (short IVs, lengths not a multiple of the block,
// padding of any value).
func FuzzParsePrivateKeyPassphrase(f *testing.F) {
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: DES-EDE3-CBC,D857EBA1E2B4AEF5\n\nAAAAAAAAAAA=\n-----END RSA PRIVATE KEY-----\n"), []byte("cisco123"))
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END EC PRIVATE KEY-----\n"), []byte(""))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,000102030405060708090a0b0c0d0e0f\n\nAAAAAAAAAAAAAAAAAAAAAA==\n-----END RSA PRIVATE KEY-----\n"), []byte("x"))
	f.Fuzz(func(t *testing.T, b, pass []byte) {
		ParsePrivateKeyPassphrase(b, pass)
	})
}

// proves: O1 (issue 14 item 2: a key exported for an IOS key server is
// in the format IOS imports (crypto key import rsa LABEL pem terminal
// PASSPHRASE): OpenSSL, the third party, decrypts it with the passphrase
// and finds the same public key; so does our import)
func TestEncryptedPEMForIOS(t *testing.T) {
	testnet.RequireTools(t, "openssl")
	dir := t.TempDir()
	for _, c := range []struct {
		typ  string
		bits int
	}{{"rsa", 2048}, {"ec", 256}} {
		k, err := Generate(c.typ, c.bits, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		b, err := EncryptedPEM(k, []byte("cisco123"), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "Proc-Type: 4,ENCRYPTED\nDEK-Info: DES-EDE3-CBC,") {
			t.Fatalf("%s:\n%s", c.typ, b)
		}
		f := filepath.Join(dir, c.typ+".pem")
		os.WriteFile(f, b, 0o600)
		got, err := exec.Command("openssl", "pkey", "-in", f, "-passin", "pass:cisco123", "-pubout", "-outform", "DER").Output()
		if err != nil {
			t.Fatalf("openssl cannot read our %s export: %v", c.typ, err)
		}
		want, _ := PublicDER(k.Public())
		if string(got) != string(want) {
			t.Fatalf("%s: openssl finds another key", c.typ)
		}
		if err := exec.Command("openssl", "pkey", "-in", f, "-passin", "pass:wrong", "-noout").Run(); err == nil {
			t.Errorf("%s: openssl reads it with a wrong passphrase", c.typ)
		}
		back, err := ParsePrivateKeyPassphrase(b, []byte("cisco123"))
		if err != nil || !back.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
			t.Fatalf("%s: our import: %v", c.typ, err)
		}
	}
}
