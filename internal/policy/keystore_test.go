package policy

import (
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/groupvpn/groupvpn/internal/keystore"
)

// ksStored is ksBase whose group signs rekeys with key K, named by no
// crypto key import line.
const ksStoredTail = `  rekey authentication mypubkey ec K
  rekey transport unicast
`

func storeWith(t *testing.T, label, typ string, bits int) *keystore.Store {
	t.Helper()
	st := keystore.Open(t.TempDir() + "/keys")
	if label != "" {
		k, err := keystore.Generate(typ, bits, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Put(label, k); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// proves: O1 (issue 14 item 2: rekey authentication mypubkey resolves
// against the key store when no crypto key import line names the key; the
// stored key is not part of the configuration, and config check says
// where it was found)
func TestRekeyKeyFromKeyStore(t *testing.T) {
	st := storeWith(t, "K", "ec", 256)
	c, err := ParseWith(name, []byte(ksBase+ksStoredTail), Options{KeyStore: st})
	if err != nil {
		t.Fatal(err)
	}
	k := c.KSGroups()[0].Server.RekeyKey
	if k == nil || k.Store != st.Dir() || k.Signer == nil || len(c.Keys) != 0 {
		t.Fatalf("rekey key %+v, keys %v: want the stored key, no crypto key import", k, c.Keys)
	}
	if strings.Contains(c.Render(), "crypto key") {
		t.Errorf("a stored key appears in the rendered configuration:\n%s", c.Render())
	}
	if got := c.RekeyKeys(); len(got) != 1 || !strings.Contains(got[0], "from the key store "+st.Dir()) || !strings.Contains(got[0], "EC P-256") {
		t.Errorf("RekeyKeys = %q", got)
	}
	// An editor's candidate is parsed against the same store.
	ed := NewEditor(c)
	if _, err := ed.Apply("hostname KS9"); err != nil {
		t.Fatal(err)
	}
	nc, err := ed.Candidate()
	if err != nil {
		t.Fatalf("candidate: %v", err)
	}
	if nc.KSGroups()[0].Server.RekeyKey == nil || nc.Options().KeyStore != st {
		t.Errorf("the candidate lost the key store")
	}
	// A crypto key import line of the label wins over the store.
	src := "crypto key import ec K file ks-rekey-ec.pem\n" + ksBase + ksStoredTail
	c, err = ParseWith(name, []byte(src), Options{KeyStore: st})
	if err != nil {
		t.Fatal(err)
	}
	if k := c.KSGroups()[0].Server.RekeyKey; k.Store != "" || k.Line != 1 {
		t.Errorf("rekey key %+v: want the crypto key import line's", k)
	}
}

// proves: O1 (issue 14 item 2: a key server cannot start with a rekey
// key it does not have: refused with the reason, naming the key store and
// how to fill it; a stored key of the other type is refused)
func TestRekeyKeyMissingFromKeyStore(t *testing.T) {
	st := storeWith(t, "", "", 0)
	_, err := ParseWith(name, []byte(ksBase+ksStoredTail), Options{KeyStore: st})
	var l ErrorList
	if !errors.As(err, &l) || len(l) != 1 {
		t.Fatalf("err = %v: want one error", err)
	}
	for _, want := range []string{`key "K" is not defined`, "the key store " + st.Dir(), "crypto key generate ec keysize 256 label K'", "crypto key import ec K pem terminal"} {
		if !strings.Contains(l[0].Msg, want) {
			t.Errorf("error %q lacks %q", l[0].Msg, want)
		}
	}
	st = storeWith(t, "K", "rsa", 2048)
	_, err = ParseWith(name, []byte(ksBase+ksStoredTail), Options{KeyStore: st})
	if err == nil || !strings.Contains(err.Error(), "key K in the key store "+st.Dir()+" is RSA, not EC") {
		t.Errorf("err = %v: want the type mismatch", err)
	}
	// A pasted IOS configuration generated the key on the router: the
	// error says to import it or generate it in the key store.
	src := "crypto key generate ec keysize 256 label K\n" + ksBase + ksStoredTail
	_, err = ParseWith(name, []byte(src), Options{KeyStore: storeWith(t, "", "", 0)})
	if err == nil || !strings.Contains(err.Error(), "was generated on IOS (crypto key generate, line 1)") || !strings.Contains(err.Error(), "crypto key import ec K pem terminal") {
		t.Errorf("err = %v", err)
	}
	// With the key in the store, the pasted line is a note saying where
	// keys are generated now.
	c, err := ParseWith(name, []byte(src), Options{KeyStore: storeWith(t, "K", "ec", 384)})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Notes) != 1 || !strings.Contains(c.Notes[0].Msg, "key store") {
		t.Errorf("notes %v: want the crypto key generate line noted, naming the key store", c.Notes)
	}
}
