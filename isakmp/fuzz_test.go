package isakmp

import (
	"bytes"
	"reflect"
	"testing"
)

// Every fuzz target checks the same contract: parsing never panics, and
// whatever parses re-marshals to exactly the input octets with Len equal to
// the marshalled length. Seeds are the golden messages and payloads; crashers
// go to testdata/fuzz/<Target>/ and stay there as regression inputs.

func seedMessages(f *testing.F) [][]byte {
	var out [][]byte
	for _, g := range goldenMessages(f) {
		b, err := g.msg.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// seedPayloads returns every payload (generic header included, Next Payload
// 0) of every golden message and of the payload goldens.
func seedPayloads(f *testing.F) []Payload {
	var out []Payload
	for _, g := range goldenMessages(f) {
		out = append(out, g.msg.Payloads...)
	}
	for _, g := range payloadGoldens() {
		out = append(out, g.p)
	}
	return out
}

func FuzzMessage(f *testing.F) {
	for _, b := range seedMessages(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMessage(b)
		if err != nil {
			return
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("parsed but cannot marshal: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip differs:\n in %x\nout %x", b, out)
		}
		if m.Len() != len(out) {
			t.Fatalf("Len %d, marshalled %d", m.Len(), len(out))
		}
		// In place: the same message, and nothing written to b.
		in := bytes.Clone(b)
		mi, err := ParseMessageInPlace(in)
		if err != nil {
			t.Fatalf("ParseMessage accepts, ParseMessageInPlace refuses: %v", err)
		}
		if !reflect.DeepEqual(mi, m) {
			t.Fatalf("ParseMessageInPlace differs from ParseMessage:\n%#v\n%#v", mi, m)
		}
		if out, err := mi.Marshal(); err != nil || !bytes.Equal(out, b) || !bytes.Equal(in, b) {
			t.Fatalf("in place: round trip %x (%v), input now %x, want %x", out, err, in, b)
		}
		if m.Encrypted() {
			// The body read as if it were the plaintext: SplitBody is
			// SplitPayloadsInPlace with the message's exchange and type.
			ps, rest, err := m.SplitBody(bytes.Clone(m.Body))
			wps, wrest, werr := SplitPayloadsInPlace(m.Header.Exchange, m.Header.NextPayload, bytes.Clone(m.Body))
			if (err == nil) != (werr == nil) || (err == nil && (!reflect.DeepEqual(ps, wps) || !bytes.Equal(rest, wrest))) {
				t.Fatalf("SplitBody (%v) differs from SplitPayloadsInPlace (%v)", err, werr)
			}
		}
	})
}

// fuzzChain parses b as a payload chain starting with type first and checks
// the round trip.
func fuzzChain(t *testing.T, first PayloadType, b []byte) {
	ps, err := ParsePayloads(first, b)
	if err != nil {
		return
	}
	if len(ps) > 0 && ps[0].Type() != first {
		t.Fatalf("first payload parsed as %s, announced %s", ps[0].Type(), first)
	}
	out, err := AppendPayloads(nil, ps)
	if err != nil {
		t.Fatalf("parsed but cannot marshal: %v", err)
	}
	if !bytes.Equal(out, b) {
		t.Fatalf("round trip differs:\n in %x\nout %x", b, out)
	}
	if n := PayloadsLen(ps); n != len(out) {
		t.Fatalf("PayloadsLen %d, marshalled %d", n, len(out))
	}
}

// FuzzPayload covers every payload type: the first input octet is the type.
func FuzzPayload(f *testing.F) {
	for _, p := range seedPayloads(f) {
		b, err := MarshalPayload(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(byte(p.Type()), b)
	}
	f.Fuzz(func(t *testing.T, first byte, b []byte) { fuzzChain(t, PayloadType(first), b) })
}

// seedOfType adds every seed payload of type t whose body satisfies keep.
func seedOfType(f *testing.F, t PayloadType, keep func(Payload) bool) {
	for _, p := range seedPayloads(f) {
		if p.Type() != t || !keep(p) {
			continue
		}
		b, err := MarshalPayload(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzSA(f *testing.F) {
	seedOfType(f, PayloadSA, func(p Payload) bool { _, ok := p.(*SA); return ok })
	f.Fuzz(func(t *testing.T, b []byte) { fuzzChain(t, PayloadSA, b) })
}

func FuzzGroupSA(f *testing.F) {
	seedOfType(f, PayloadSA, func(p Payload) bool { _, ok := p.(*GroupSA); return ok })
	f.Fuzz(func(t *testing.T, b []byte) { fuzzChain(t, PayloadSA, b) })
}

func FuzzKD(f *testing.F) {
	seedOfType(f, PayloadKD, func(Payload) bool { return true })
	f.Fuzz(func(t *testing.T, b []byte) { fuzzChain(t, PayloadKD, b) })
}

func FuzzAttributes(f *testing.F) {
	f.Add(goldenGroupSA().KEK.Attributes.Append(nil))
	f.Add(goldenGroupSA().TEKs[0].Attributes.Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		as, err := ParseAttributes(b)
		if err != nil {
			return
		}
		if out := as.Append(nil); !bytes.Equal(out, b) {
			t.Fatalf("round trip differs:\n in %x\nout %x", b, out)
		}
		for _, a := range as {
			if _, err := a.Uint(); err != nil && (a.Basic || (len(a.Data) > 0 && len(a.Data) <= 8)) {
				t.Fatalf("Uint of %v: %v", a, err)
			}
		}
	})
}

// FuzzLKHArray: the first two input octets choose the form and the key
// data length; the rest is the attribute value.
func FuzzLKHArray(f *testing.F) {
	f.Add(false, uint8(4), []byte{1, 0, 1, 0, 0, 1, 3, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xa, 0xb, 0xc, 0xd})
	f.Add(true, uint8(0), []byte{1, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 9})
	f.Fuzz(func(t *testing.T, update bool, keyLen uint8, v []byte) {
		a, err := ParseLKHArray(v, update, int(keyLen))
		if err != nil {
			return
		}
		if out := a.Append(nil); !bytes.Equal(out, v) {
			t.Fatalf("round trip differs:\n in %x\nout %x", v, out)
		}
	})
}
