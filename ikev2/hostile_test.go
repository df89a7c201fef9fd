package ikev2

import (
	"bytes"
	"errors"
	"testing"
)

// proves: G1 (issue 17: malformed IKEv2 input is refused with a located
// error that wraps ErrShort or ErrMalformed; no input panics)
func TestMalformedInputIsRefused(t *testing.T) {
	cases := []struct {
		name  string
		first PayloadType
		hex   string
		want  error
		text  string
	}{
		{"payload length below header", PayloadVendorID, "00 00 0003", ErrMalformed, "shorter than the generic header"},
		{"payload length past end", PayloadVendorID, "00 00 0009 0102", ErrShort, "need 9"},
		{"next payload past end", PayloadVendorID, "2b 00 0005 01", ErrShort, ""},
		{"trailing octets", PayloadVendorID, "00 00 0005 01 ff", ErrMalformed, "after the last payload"},
		{"SK not last", PayloadSK, "00 00 0005 01 2b 00 0004", ErrMalformed, "must be the last"},
		{"SK empty", PayloadSK, "00 00 0004", ErrMalformed, "no IV"},
		{"SKF number 0", PayloadSKF, "00 00 0009 0000 0002 01", ErrMalformed, "Fragment Number 0"},
		{"SKF number past total", PayloadSKF, "00 00 0009 0003 0002 01", ErrMalformed, "Fragment Number 3"},
		{"SKF 2 names inner", PayloadSKF, "23 00 0009 0002 0002 01", ErrMalformed, "only fragment 1"},
		{"KE short", PayloadKE, "00 00 0006 0013", ErrShort, ""},
		{"IPv4 ID of 3 octets", PayloadIDi, "00 00 000b 01 000000 0a0000", ErrMalformed, "must be 4"},
		{"ID_NULL with data", PayloadIDr, "00 00 0009 0d 000000 01", ErrMalformed, "must be 0"},
		{"Nonce of 15 octets", PayloadNonce, "00 00 0013 000102030405060708090a0b0c0d0e", ErrMalformed, "16 to 256"},
		{"AUTH without data", PayloadAUTH, "00 00 0008 02 000000", ErrMalformed, "no Authentication Data"},
		{"AUTH 14 ASN.1 Length past end", PayloadAUTH, "00 00 000b 0e 000000 05 3000", ErrShort, ""},
		{"AUTH 14 no signature", PayloadAUTH, "00 00 000b 0e 000000 02 3000", ErrMalformed, "no Signature Value"},
		{"AUTH 14 ASN.1 Length 0", PayloadAUTH, "00 00 000a 0e 000000 00 01", ErrMalformed, "ASN.1 Length is 0"},
		{"Notify SPI past end", PayloadNotify, "00 00 000a 03 04 4009 0102", ErrShort, ""},
		{"Delete count vs octets", PayloadDelete, "00 00 000c 03 04 0002 01020304", ErrMalformed, "2 SPIs of 4 octets"},
		{"Delete SPI size 0 with SPIs", PayloadDelete, "00 00 0008 01 00 0001", ErrMalformed, "size 0"},
		{"TS count 0", PayloadTSi, "00 00 0008 00 000000", ErrMalformed, "Number of TSs is 0"},
		{"TS count past selectors", PayloadTSi, "00 00 0018 02 000000 07 00 0010 0000 ffff 0a010000 0a01ffff", ErrShort, ""},
		{"TS IPv4 wrong length", PayloadTSr, "00 00 0014 01 000000 07 00 000c 0000 ffff 0a010000", ErrMalformed, "must be 16"},
		{"TS selector length below 4", PayloadTSr, "00 00 000c 01 000000 0a 00 0002", ErrMalformed, "shorter than the fixed part"},
		{"SA empty", PayloadSA, "00 00 0004", ErrMalformed, "no proposal"},
		{"SA proposal length past end", PayloadSA, "00 00 000c 00 00 0010 01 01 00 01", ErrShort, ""},
		{"SA proposal last substruc 1", PayloadSA, "00 00 0014 01 00 0010 01 01 00 01 00 00 0008 01 00 000c", ErrMalformed, "Last Substruc 1"},
		{"SA proposal says more, none follows", PayloadSA, "00 00 0014 02 00 0010 01 01 00 01 00 00 0008 01 00 000c", ErrMalformed, "disagrees"},
		{"SA transform count", PayloadSA, "00 00 0014 00 00 0010 01 01 00 02 00 00 0008 01 00 000c", ErrMalformed, "Num Transforms is 2"},
		{"SA transform count 0", PayloadSA, "00 00 000c 00 00 0008 01 01 00 00", ErrMalformed, "Num Transforms is 0"},
		{"SA transform says more, none follows", PayloadSA, "00 00 0014 00 00 0010 01 01 00 01 03 00 0008 01 00 000c", ErrMalformed, "disagrees"},
		{"SA attribute TLV past end", PayloadSA, "00 00 0018 00 00 0014 01 01 00 01 00 00 000c 01 00 000c 000e 0008", ErrShort, ""},
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

// proves: G1 (issue 17: the message-level bounds: a header of another
// major version is ErrVersion (INVALID_MAJOR_VERSION), a Length that
// disagrees with the datagram and a message over MaxMessageLen are
// refused, and a chain over MaxPayloads is refused)
func TestMessageBounds(t *testing.T) {
	good, err := messageGoldens()[0].msg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	v1 := append([]byte{}, good...)
	v1[17] = 0x10
	if _, err := Parse(v1); !errors.Is(err, ErrVersion) {
		t.Fatalf("IKEv1 header: %v, want ErrVersion", err)
	}
	minor := append([]byte{}, good...)
	minor[17] = 0x21
	if _, err := Parse(minor); err != nil {
		t.Fatalf("minor version 1 must be ignored (RFC 7296 §3.1): %v", err)
	}
	long := append(append([]byte{}, good...), 0)
	if _, err := Parse(long); !errors.Is(err, ErrMalformed) {
		t.Fatalf("datagram longer than Length: %v", err)
	}
	huge := make([]byte, MaxMessageLen+1)
	copy(huge, good)
	if _, err := Parse(huge); !errors.Is(err, ErrMalformed) {
		t.Fatalf("oversize message: %v", err)
	}
	// MaxPayloads+1 Vendor IDs of 4 octets.
	var chain []byte
	for i := 0; i <= MaxPayloads; i++ {
		next := byte(PayloadVendorID)
		if i == MaxPayloads {
			next = 0
		}
		chain = append(chain, next, 0, 0, 4)
	}
	if _, err := ParsePayloads(PayloadVendorID, chain); err == nil {
		t.Fatal("a chain of MaxPayloads+1 payloads parsed")
	}
	if _, err := ParsePayloads(PayloadVendorID, chain[4:]); err != nil {
		t.Fatalf("a chain of MaxPayloads payloads: %v", err)
	}
	if _, err := ParseInner(PayloadSK, unhex(t, "00 00 0005 01")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("SK inside SK: %v", err)
	}
}

// proves: G1 (issue 17: an unknown payload with the critical bit is
// reported by UnsupportedCritical, for the SA layer's
// UNSUPPORTED_CRITICAL_PAYLOAD; a non-critical one is skipped; the critical
// bit of a known payload and RESERVED octets are ignored (RFC 7296 §3.2))
func TestCriticalBit(t *testing.T) {
	ps, err := ParsePayloads(PayloadVendorID, unhex(t, `
		c8 01 0005 01       # V, RESERVED bit set: ignored; next 200
		c9 00 0005 02       # 200, not critical; next 201
		00 80 0005 03       # 201, critical`))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := UnsupportedCritical(ps, nil); !ok || got != 201 {
		t.Fatalf("UnsupportedCritical = %v, %v; want 201", got, ok)
	}
	if _, ok := UnsupportedCritical(ps, func(t PayloadType) bool { return t == 201 }); ok {
		t.Fatal("a type the SA layer knows is reported")
	}
	out, err := AppendPayloads(nil, ps)
	if err != nil {
		t.Fatal(err)
	}
	// Canonical form: the RESERVED bit of the V payload is cleared, the
	// critical bit of the raw payload kept.
	if want := unhex(t, "c8 00 0005 01 c9 00 0005 02 00 80 0005 03"); !bytes.Equal(out, want) {
		t.Fatalf("re-marshal %x, want %x", out, want)
	}
	ps, err = ParsePayloads(PayloadNotify, unhex(t, "00 80 0008 00 00 4000"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := UnsupportedCritical(ps, nil); ok {
		t.Fatal("a known payload with the critical bit is reported")
	}
}

// proves: G1 (issue 17: EncryptedDataOffset gives the end of the AEAD
// associated data: the IKE header, any cleartext payloads and the SK
// generic header; for SKF, the fragment numbers too)
func TestEncryptedDataOffset(t *testing.T) {
	b, err := (&Message{Header: Header{Exchange: ExchangeIKEAuth}, Payloads: []Payload{
		&VendorID{Data: []byte{1}}, &Encrypted{Inner: PayloadIDi, Data: []byte{9, 9}}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if off, err := EncryptedDataOffset(b); err != nil || off != HeaderLen+5+4 {
		t.Fatalf("SK: %d, %v", off, err)
	}
	b, err = (&Message{Header: Header{Exchange: ExchangeIKEAuth}, Payloads: []Payload{
		&EncryptedFragment{Inner: PayloadIDi, Number: 1, Total: 3, Data: []byte{9}}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if off, err := EncryptedDataOffset(b); err != nil || off != HeaderLen+8 {
		t.Fatalf("SKF: %d, %v", off, err)
	}
	b, err = messageGoldens()[0].msg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := EncryptedDataOffset(b); err == nil {
		t.Fatal("IKE_SA_INIT has no SK payload")
	}
}
