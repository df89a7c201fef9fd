package ikev2

import (
	"bytes"
	"testing"
)

// Every fuzz target checks the same contract: parsing never panics, and
// whatever parses re-marshals to a canonical form (RESERVED bits cleared,
// RFC 7296 §3) of the same length that parses and re-marshals to itself.
// Input without RESERVED bits set round-trips exactly. Seeds are the golden
// messages, inner chains and payloads; crashers go to testdata/fuzz/<Target>/
// and stay there as regression inputs.

func seedMessages(f *testing.F) [][]byte {
	var out [][]byte
	for _, g := range messageGoldens() {
		b, err := g.msg.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// proves: G1 (issue 17: no message input panics the parser; what parses
// re-marshals to a stable canonical form of the same length)
func FuzzParse(f *testing.F) {
	for _, b := range seedMessages(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("parsed but cannot marshal: %v", err)
		}
		checkCanonical(t, b, out, func(c []byte) ([]byte, error) {
			m2, err := Parse(c)
			if err != nil {
				return nil, err
			}
			return m2.Marshal()
		})
	})
}

// proves: G1 (issue 17: no decrypted inner chain panics the parser; what
// parses re-marshals to a stable canonical form of the same length)
func FuzzParseInner(f *testing.F) {
	for _, g := range innerGoldens() {
		f.Add(byte(g.first), unhex(f, g.hex))
	}
	f.Fuzz(func(t *testing.T, first byte, b []byte) {
		ps, err := ParseInner(PayloadType(first), b)
		if err != nil {
			return
		}
		out, err := AppendPayloads(nil, ps)
		if err != nil {
			t.Fatalf("parsed but cannot marshal: %v", err)
		}
		checkCanonical(t, b, out, func(c []byte) ([]byte, error) {
			ps2, err := ParseInner(PayloadType(first), c)
			if err != nil {
				return nil, err
			}
			return AppendPayloads(nil, ps2)
		})
	})
}

// FuzzPayload parses one payload of every type from arbitrary octets.
//
// proves: G1 (issue 17: no payload body of any type, GSA and KD included,
// panics the parser; what parses re-marshals canonically)
func FuzzPayload(f *testing.F) {
	for _, g := range allPayloadGoldens() {
		f.Add(byte(g.p.Type()), unhex(f, g.hex))
	}
	f.Fuzz(func(t *testing.T, typ byte, b []byte) {
		ps, err := ParsePayloads(PayloadType(typ), b)
		if err != nil {
			return
		}
		out, err := AppendPayloads(nil, ps)
		if err != nil {
			t.Fatalf("parsed but cannot marshal: %v", err)
		}
		checkCanonical(t, b, out, func(c []byte) ([]byte, error) {
			ps2, err := ParsePayloads(PayloadType(typ), c)
			if err != nil {
				return nil, err
			}
			return AppendPayloads(nil, ps2)
		})
	})
}

func checkCanonical(t *testing.T, in, out []byte, reparse func([]byte) ([]byte, error)) {
	t.Helper()
	if len(out) != len(in) {
		t.Fatalf("re-marshal changed the length: in %d octets, out %d\n in %x\nout %x", len(in), len(out), in, out)
	}
	again, err := reparse(out)
	if err != nil {
		t.Fatalf("canonical form does not parse: %v\n in %x\nout %x", err, in, out)
	}
	if !bytes.Equal(again, out) {
		t.Fatalf("canonical form is not stable:\nout %x\nagain %x", out, again)
	}
}
