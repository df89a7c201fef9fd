package ike

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: groundwork (IKEv1 key derivation) — SKEYID, SKEYID_d/_a/_e, the
// encryption key, the initial IV, HASH_I and HASH_R equal the values
// strongSwan's charon computed and logged (ike=4) in real exchanges with
// groupvpn, for PSK, RSA and ECDSA, in both roles. The vectors are recorded
// by internal/ikeudp's interop test (GROUPVPN_WRITE_VECTORS=1) and checked
// here without charon.
func TestKnownAnswersFromCharon(t *testing.T) {
	files, _ := filepath.Glob("testdata/charon-*.json")
	if len(files) < 7 {
		t.Fatalf("want the 7 recorded charon vectors, found %d", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var v map[string]string
			if err := json.Unmarshal(raw, &v); err != nil {
				t.Fatal(err)
			}
			b := func(k string) []byte {
				x, err := hex.DecodeString(v[k])
				if err != nil || (v[k] == "" && k != "psk") {
					t.Fatalf("%s: bad or missing %q", f, k)
				}
				return x
			}
			saP, err := isakmp.ParsePayloads(isakmp.PayloadSA, append([]byte{0, 0, byte((len(b("sai_b")) + 4) >> 8), byte(len(b("sai_b")) + 4)}, b("sai_b")...))
			if err != nil {
				t.Fatal(err)
			}
			suite, err := suiteFromTransform(saP[0].(*isakmp.SA).Proposals[0].Transforms[0])
			if err != nil {
				t.Fatal(err)
			}
			var icky, rcky isakmp.Cookie
			copy(icky[:], b("icky"))
			copy(rcky[:], b("rcky"))
			var psk []byte
			if suite.Auth == AuthPSK {
				psk = b("psk")
			}
			keys, err := DeriveKeys(suite, psk, b("ni"), b("nr"), b("charon:shared Diffie Hellman secret"), b("gxi"), b("gxr"), icky, rcky)
			if err != nil {
				t.Fatal(err)
			}
			for label, ours := range map[string][]byte{"SKEYID": keys.SKEYID, "SKEYID_d": keys.SKEYIDd,
				"SKEYID_a": keys.SKEYIDa, "SKEYID_e": keys.SKEYIDe, "encryption key Ka": keys.Ka, "initial IV": keys.IV} {
				if !bytes.Equal(ours, b("charon:"+label)) {
					t.Errorf("%s: ours %x, charon %x", label, ours, b("charon:"+label))
				}
			}
			hs := &mmState{gxi: b("gxi"), gxr: b("gxr"), saiBody: b("sai_b")}
			copy(hs.mk.skeyid[:], keys.SKEYID)
			sa := &SA{cfg: &Config{}, suite: suite, icky: icky, rcky: rcky, hs: hs}
			if got := sa.hashFor(true, b("idii_b")); !bytes.Equal(got, b("charon:HASH_I")) {
				t.Errorf("HASH_I: ours %x, charon %x", got, b("charon:HASH_I"))
			}
			if got := sa.hashFor(false, b("idir_b")); !bytes.Equal(got, b("charon:HASH_R")) {
				t.Errorf("HASH_R: ours %x, charon %x", got, b("charon:HASH_R"))
			}
			dataI := bytes.Join([][]byte{b("gxi"), b("gxr"), icky[:], rcky[:], b("sai_b"), b("idii_b")}, nil)
			if !bytes.Equal(dataI, b("charon:HASH_I data")) {
				t.Error("HASH_I input differs from charon's")
			}
		})
	}
}
