package ikev2

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const (
	tsAny  = " 07 00 0010 0000 ffff 00000000 ffffffff "
	espPol = " 03 04 0030 01020304 " + tsAny + tsAny + " 00 00 0008 01 00 0014 " // 48 octets, no attributes
	kekPol = " 06 10 003c 000102030405060708090a0b0c0d0e0f " + tsAny + tsAny + " 00 00 0008 01 00 0014 "
)

// proves: G1 (issue 17: malformed RFC 9838 GSA and KD payloads are refused
// with a located error: policy counts of §4.4.1, SPI sizes, the attribute
// formats and multiplicities of the registries, wrapped-key Key IDs)
func TestMalformedGIKEv2Refused(t *testing.T) {
	cases := []struct {
		name  string
		first PayloadType
		hex   string
		want  error
		text  string
	}{
		{"GSA empty", PayloadGSA, "00 00 0004", ErrMalformed, "no GSA KEK or GSA TEK policy"},
		{"GSA only GW", PayloadGSA, "00 00 0008 00 00 0004", ErrMalformed, "no GSA KEK or GSA TEK policy"},
		{"GSA two KEKs", PayloadGSA, "00 00 007c" + kekPol + kekPol, ErrMalformed, "second GSA KEK"},
		{"GSA two GW", PayloadGSA, "00 00 003c" + espPol + "00 00 0004 00 00 0004", ErrMalformed, "second GW policy"},
		{"GSA ESP SPI size 16", PayloadGSA, "00 00 000c 03 10 0008 00000000", ErrMalformed, "SPI Size 16 (must be 4)"},
		{"GSA KEK SPI size 4", PayloadGSA, "00 00 000c 06 04 0008 00000000", ErrMalformed, "SPI Size 4 (must be 16)"},
		{"GSA policy length 3", PayloadGSA, "00 00 0008 03 04 0003 00", ErrMalformed, "shorter than the fixed part"},
		{"GSA policy past payload", PayloadGSA, "00 00 0008 03 04 0030", ErrShort, ""},
		{"GSA transform past policy", PayloadGSA, "00 00 0034 03 04 0030 01020304" + tsAny + tsAny + "00 00 0010 01 00 0014", ErrShort, ""},
		{"GSA transform last substruc 2", PayloadGSA, "00 00 0034 03 04 0030 01020304" + tsAny + tsAny + "02 00 0008 01 00 0014", ErrMalformed, "Last Substruc 2"},
		{"GSA no transform", PayloadGSA, "00 00 002c 03 04 0028 01020304" + tsAny + tsAny, ErrShort, ""},
		{"GSA bad selector", PayloadGSA, "00 00 002c 03 04 0028 01020304 07 00 0008 0000 ffff" + tsAny + "00 00 0008 01 00 0014", ErrMalformed, "Selector Length 8"},
		{"GSA_KEY_LIFETIME TV", PayloadGSA, "00 00 0038 03 04 0034 01020304" + tsAny + tsAny + "00 00 0008 01 00 0014 8001 0e10", ErrMalformed, "must be TLV"},
		{"GSA_KEY_LIFETIME 2 octets", PayloadGSA, "00 00 003a 03 04 0036 01020304" + tsAny + tsAny + "00 00 0008 01 00 0014 0001 0002 0e10", ErrMalformed, "of 2 octets (must be 4)"},
		{"two GSA_KEY_LIFETIME", PayloadGSA, "00 00 0044 03 04 0040 01020304" + tsAny + tsAny + "00 00 0008 01 00 0014 0001 0004 00000e10 0001 0004 00000e10", ErrMalformed, "a second GSA_KEY_LIFETIME"},
		{"GSA_NEXT_SPI of the wrong size", PayloadGSA, "00 00 003a 03 04 0036 01020304" + tsAny + tsAny + "00 00 0008 01 00 0014 0003 0002 0102", ErrMalformed, "GSA_NEXT_SPI of 2 octets (must be 4)"},
		{"GWP_ATD TLV", PayloadGSA, "00 00 003e" + espPol + "00 00 000a 0001 0002 001e", ErrMalformed, "must be TV"},
		{"two GWP_ATD", PayloadGSA, "00 00 0040" + espPol + "00 00 000c 8001 001e 8001 001e", ErrMalformed, "a second GWP_ATD"},
		{"KD empty", PayloadKD, "00 00 0004", ErrMalformed, "no key bag"},
		{"KD SA_KEY with Key ID 1", PayloadKD, "00 00 001c 03 04 0018 01020304 0001 000c 00000001 00000000 aabbccdd", ErrMalformed, "SA_KEY with Key ID 1"},
		{"KD WRAP_KEY with Key ID 0", PayloadKD, "00 00 0018 00 00 0014 0001 000c 00000000 00000000 aabbccdd", ErrMalformed, "WRAP_KEY with Key ID 0"},
		{"KD wrapped key without Encrypted Key", PayloadKD, "00 00 0018 03 04 0014 01020304 0001 0008 00000000 00000000", ErrMalformed, "at least one octet"},
		{"KD two AUTH_KEY", PayloadKD, "00 00 0012 00 00 000e 0002 0001 aa 0002 0001 bb", ErrMalformed, "a second AUTH_KEY"},
		{"KD two member key bags", PayloadKD, "00 00 000c 00 00 0004 00 00 0004", ErrMalformed, "a second member key bag"},
		{"KD ESP bag SPI size 16", PayloadKD, "00 00 0008 03 10 0004", ErrMalformed, "SPI Size 16 (must be 4)"},
		{"KD SA_KEY TV", PayloadKD, "00 00 0010 03 04 000c 01020304 8001 0000", ErrMalformed, "must be TLV"},
		{"KD key bag past payload", PayloadKD, "00 00 0008 03 04 0010", ErrShort, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParsePayloads(c.first, unhex(t, c.hex))
			if err == nil {
				t.Fatal("parsed without error")
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v does not wrap %v", err, c.want)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			if c.text != "" && !bytes.Contains([]byte(err.Error()), []byte(c.text)) {
				t.Fatalf("error %q does not say %q", err, c.text)
			}
		})
	}
}

// proves: G1 (issue 17: GroupPolicy.Check applies RFC 9838 §4.4.2.1's
// transform table: mandatory and optional types per protocol, GCAUTH only at
// registration, INTEG only without AEAD, the Signature Algorithm Identifier
// only with Digital Signature)
func TestGroupPolicyCheck(t *testing.T) {
	reg := goldenKEKPolicy()
	if err := reg.Check(true); err != nil {
		t.Fatalf("registration KEK policy: %v", err)
	}
	if err := reg.Check(false); err == nil || !strings.Contains(err.Error(), "GCAUTH") {
		t.Fatalf("GCAUTH in a rekey: %v", err)
	}
	rekey := goldenRekeyInner(seq(0, 8))[0].(*GSA)
	if err := rekey.KEK().Check(false); err != nil {
		t.Fatalf("rekey KEK policy: %v", err)
	}
	if err := rekey.KEK().Check(true); err == nil {
		t.Fatal("registration KEK policy without GCAUTH passed")
	}
	for _, tek := range rekey.TEKs() {
		if err := tek.Check(false); err != nil {
			t.Fatalf("TEK policy: %v", err)
		}
	}
	if err := goldenGWPolicy().Check(true); err != nil {
		t.Fatalf("GW policy: %v", err)
	}
	bad := []struct {
		name string
		edit func(g *GroupPolicy)
		text string
	}{
		{"KEK with AES-CBC and no INTEG", func(g *GroupPolicy) { g.Transforms[0].ID = EncrAESCBC }, "INTEG only without an AEAD"},
		{"KEK with AES-GCM and INTEG", func(g *GroupPolicy) {
			g.Transforms = append(g.Transforms, &Transform{Type: TransformINTEG, ID: IntegHMACSHA2256128})
		}, "INTEG only without an AEAD"},
		{"KEK without KWA", func(g *GroupPolicy) { g.Transforms = append(g.Transforms[:1], g.Transforms[2]) }, "0 KWA transforms"},
		{"KEK with two ENCR", func(g *GroupPolicy) { g.Transforms = append(g.Transforms, g.Transforms[0]) }, "2 ENCR transforms"},
		{"KEK with a KE transform", func(g *GroupPolicy) {
			g.Transforms = append(g.Transforms, &Transform{Type: TransformKE, ID: KEECP256})
		}, "does not allow"},
		{"Digital Signature without algorithm", func(g *GroupPolicy) { g.Transforms[2].Attributes = nil }, "Signature Algorithm Identifier false"},
		{"Implicit with algorithm", func(g *GroupPolicy) { g.Transforms[2].ID = GCAuthImplicit }, "Signature Algorithm Identifier true"},
	}
	for _, c := range bad {
		g := goldenKEKPolicy()
		c.edit(g)
		if err := g.Check(true); err == nil || !strings.Contains(err.Error(), c.text) {
			t.Errorf("%s: %v, want %q", c.name, err, c.text)
		}
	}
	tek := goldenTEKPolicy([]byte{1, 2, 3, 4})
	tek.Transforms = tek.Transforms[:1]
	if err := tek.Check(false); err == nil || !strings.Contains(err.Error(), "0 SN transforms") {
		t.Errorf("ESP without SN: %v", err)
	}
}

// proves: G1 (issue 17: the accessors the SA layer reads a GSA and KD
// through: KEK/TEKs/GW, the GCAUTH algorithm, the key bags and their
// wrapped keys)
func TestGIKEv2Accessors(t *testing.T) {
	ps, err := ParseInner(PayloadIDr, unhex(t, gikev2InnerGoldens()[0].hex))
	if err != nil {
		t.Fatal(err)
	}
	gsa := Find(ps, PayloadGSA).(*GSA)
	if gsa.KEK() == nil || len(gsa.TEKs()) != 1 || gsa.GW() == nil {
		t.Fatalf("KEK %v TEKs %d GW %v", gsa.KEK(), len(gsa.TEKs()), gsa.GW())
	}
	alg, ok := gsa.KEK().Transform(TransformGCAUTH).SignatureAlgorithm()
	if !ok || !bytes.Equal(alg, ecdsaSHA256AlgID) {
		t.Fatalf("signature algorithm %x %v", alg, ok)
	}
	if a, ok := gsa.GW().Attributes.Get(GWPSenderIDBits); !ok || a.Value != 8 {
		t.Fatalf("GWP_SENDER_ID_BITS %v %v", a, ok)
	}
	kd := Find(ps, PayloadKD).(*KD)
	tek := kd.Bag(ProtoESP, []byte{0x11, 0x22, 0x33, 0x44})
	if tek == nil || len(tek.WrappedKeys()) != 1 || tek.WrappedKeys()[0].KWKID != 0 {
		t.Fatalf("TEK bag %+v", tek)
	}
	m := kd.Bag(0, nil)
	if m == nil || !m.IsMember() || len(m.WrappedKeys()) != 1 || m.WrappedKeys()[0].KeyID != 9 {
		t.Fatalf("member bag %+v", m)
	}
	if a, ok := m.Attributes.Get(KBGMSenderID); !ok {
		t.Fatal("no GM_SENDER_ID")
	} else if v, err := a.Uint(); err != nil || v != 5 {
		t.Fatalf("GM_SENDER_ID %d %v", v, err)
	}
	idg := Find(ps, PayloadIDg)
	if idg != nil {
		t.Fatal("no IDg in a GSA_AUTH response")
	}
}
