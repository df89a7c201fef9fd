package isakmp

import (
	"errors"
	"runtime"
	"strings"
	"testing"
)

// proves: groundwork (hardened codec) — malformed input is refused with an
// error that says what and where, wrapping ErrShort or ErrMalformed.
func TestMalformedInputIsRefused(t *testing.T) {
	cases := []struct {
		name  string
		first PayloadType
		hex   string
		want  error
		text  string
	}{
		{"payload length below header", PayloadHash, "00 00 0003", ErrMalformed, "shorter than the generic header"},
		{"payload length past end", PayloadHash, "00 00 0009 0102", ErrShort, "need 9"},
		{"reserved octet set", PayloadHash, "00 01 0005 01", ErrMalformed, "RESERVED is not zero"},
		{"next payload past end", PayloadHash, "08 00 0005 01", ErrShort, ""},
		{"trailing octets", PayloadHash, "00 00 0005 01 ff", ErrMalformed, "after the last payload"},
		{"SEQ too long", PayloadSEQ, "00 00 000c 00000001 00000002", ErrMalformed, "trailing"},
		{"SEQ too short", PayloadSEQ, "00 00 0006 0001", ErrShort, ""},
		{"IPv4 ID of 3 octets", PayloadID, "00 00 000b 01 00 0000 0a0000", ErrMalformed, "needs 4 octets"},
		{"Delete count vs octets", PayloadDelete, "00 00 0010 00000002 01 04 0002 01020304", ErrMalformed, "2 SPIs of 4 octets"},
		{"Delete SPI size 0 with SPIs", PayloadDelete, "00 00 000c 00000002 00 00 0005", ErrMalformed, "size 0"},
		{"Notify SPI past end", PayloadNotification, "00 00 000e 00000001 01 10 6002 0102", ErrShort, ""},
		{"attribute TLV past end", PayloadGAP, "00 00 000a 0001 0008 0102", ErrShort, ""},
		{"KD count mismatch", PayloadKD, "00 00 0008 0002 0000", ErrMalformed, "Number of Key Packets is 2"},
		{"KD reserved set", PayloadKD, "00 00 0008 0000 0100", ErrMalformed, "RESERVED2"},
		{"key packet length below header", PayloadKD, "00 00 000d 0001 0000 01 00 0004 00", ErrMalformed, "KD Length 4"},
		{"key packet length past payload", PayloadKD, "00 00 000d 0001 0000 01 00 0020 00", ErrShort, ""},
		{"SID key packet with SPI", PayloadKD, "00 00 0011 0001 0000 04 00 0009 04 01020304", ErrMalformed, "SID key packet"},
		{"SAK outside SA", PayloadSAK, "00 00 0004", ErrMalformed, "outside a GDOI SA"},
		{"proposal outside SA", PayloadProposal, "00 00 0004", ErrMalformed, "outside an SA"},
		{"GDOI SA situation set", PayloadSA, "00 00 0010 00000002 00000001 000f 0000", ErrMalformed, "Situation"},
		{"GDOI SA bad first attr", PayloadSA, "00 00 0010 00000002 00000000 0005 0000", ErrMalformed, "SA Attribute Next Payload 5"},
		{"GDOI SA: GAP after SAT", PayloadSA, `00 00 001a 00000002 00000000 0010 0000
			16 00 0006 80 00     # SAT, private protocol 0x80 (kept raw), next GAP
			00 00 0004           # GAP`, ErrMalformed, "out of order"},
		{"GDOI SA: two GAPs", PayloadSA, `00 00 0018 00000002 00000000 0016 0000
			16 00 0004 00 00 0004`, ErrMalformed, "out of order"},
		{"GDOI SA: foreign payload in chain", PayloadSA, `00 00 0014 00000002 00000000 0016 0000
			08 00 0004`, ErrMalformed, "next payload HASH is not allowed"},
		{"SAK with an empty IPv4 ID", PayloadSA, `00 00 0031 00000002 00000000 000f 0000
			00 00 0021 11 01 0000 00 01 0000 00 000102030405060708090a0b0c0d0e0f 00000001`, ErrMalformed, "ID_IPV4_ADDR needs 4"},
		{"IPsec SA labelled situation", PayloadSA, "00 00 000c 00000001 00000002", ErrMalformed, "situation 0x2"},
		{"IPsec SA transform count", PayloadSA, `00 00 001c 00000001 00000001
			00 00 0010 01 01 00 02  00 00 0008 01 01 0000`, ErrMalformed, "# of transforms is 2"},
		{"proposal chained to transform type", PayloadSA, `00 00 001c 00000001 00000001
			03 00 0010 01 01 00 01  00 00 0008 01 01 0000`, ErrMalformed, "next payload T is not allowed"},
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
				t.Fatalf("error %T is not a *ParseError", err)
			}
			if !strings.Contains(err.Error(), c.text) {
				t.Fatalf("error %q lacks %q", err, c.text)
			}
		})
	}
}

func TestSAKReserved2MustBeZero(t *testing.T) {
	p := goldenGroupSA()
	b, err := MarshalPayload(p)
	if err != nil {
		t.Fatal(err)
	}
	// The SAK's RESERVED2 sits after the 16 SA header octets, the SAK
	// generic header, its 17-octet selector and the 16-octet SPI.
	off := 16 + 4 + 17 + 16
	if string(b[off:off+4]) != "\x00\x00\x00\x00" {
		t.Fatalf("octets at %d are not the zero RESERVED2: %x", off, b[off:off+4])
	}
	b[off+3] = 1
	_, err = ParsePayloads(PayloadSA, b)
	if err == nil || !strings.Contains(err.Error(), "RESERVED2 is not zero") {
		t.Fatalf("non-zero RESERVED2 accepted or misreported: %v", err)
	}
}

func TestHeaderChecks(t *testing.T) {
	b, err := (&Message{Header: hdr(ExchangePull, 1), Payloads: []Payload{&SEQ{Number: 1}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	v2 := append([]byte{}, b...)
	v2[17] = 0x20
	if _, err := ParseMessage(v2); !errors.Is(err, ErrVersion) {
		t.Fatalf("IKEv2 header: %v, want ErrVersion", err)
	}
	long := append(append([]byte{}, b...), 0)
	if _, err := ParseMessage(long); !errors.Is(err, ErrMalformed) {
		t.Fatalf("datagram longer than Length: %v", err)
	}
	enc := append([]byte{}, b...)
	enc[19] = byte(FlagEncryption)
	m, err := ParseMessage(enc)
	if err != nil || !m.Encrypted() || len(m.Body) != len(b)-HeaderLen || len(m.Payloads) != 0 {
		t.Fatalf("encrypted body not left to the caller: %v %+v", err, m)
	}
}

// proves: groundwork (no allocation from wire lengths) — counts and lengths
// that promise more than the input holds cost nothing beyond the input.
func TestHostileCountsDoNotAllocate(t *testing.T) {
	inputs := map[string]struct {
		first PayloadType
		hex   string
	}{
		"Delete 65535 SPIs of 255": {PayloadDelete, "00 00 000c 00000001 03 ff ffff"},
		"KD 65535 key packets":     {PayloadKD, "00 00 0008 ffff 0000"},
		"proposal 255 transforms":  {PayloadSA, "00 00 0014 00000001 00000001 00 00 0008 01 03 ff ff"},
		"attribute of 65535":       {PayloadGAP, "00 00 0008 0001 ffff"},
		"ID data len 255 in SAK":   {PayloadSA, "00 00 0018 00000002 00000000 000f 0000 00 00 0008 11 01 0000 ff"},
		"payload length 65535":     {PayloadHash, "00 00 ffff"},
	}
	for name, in := range inputs {
		b := unhex(t, in.hex)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := 0; i < 100; i++ {
			if _, err := ParsePayloads(in.first, b); err == nil {
				t.Fatalf("%s: parsed without error", name)
			}
		}
		runtime.ReadMemStats(&after)
		if perParse := (after.TotalAlloc - before.TotalAlloc) / 100; perParse > 4096 {
			t.Errorf("%s: %d octets allocated per parse of a %d-octet input", name, perParse, len(b))
		}
	}
}

func TestCountAttributesSizesExactly(t *testing.T) {
	b := goldenGroupSA().KEK.Attributes.Append(nil)
	if n, want := countAttributes(b), len(goldenGroupSA().KEK.Attributes); n != want {
		t.Fatalf("countAttributes = %d, want %d", n, want)
	}
	as, err := ParseAttributes(b)
	if err != nil || cap(as) != len(as) {
		t.Fatalf("len %d cap %d err %v", len(as), cap(as), err)
	}
}

// proves: groundwork (codec) — the GDOI DOI in a phase-1 SA payload means
// proposals (RFC 6407 §2.1), elsewhere SAK/GAP/SAT (§5.2).
func TestGDOIDOIInPhase1SA(t *testing.T) {
	sa := &SA{DOI: DOIGDOI, Situation: SituationIdentityOnly, Proposals: []*Proposal{{Number: 1, Protocol: ProtoISAKMP,
		Transforms: []*Transform{{Number: 1, ID: TransformKeyIKE, Attributes: Attributes{BasicAttr(IKEEncryptionAlgorithm, EncAESCBC)}}}}}}
	m := &Message{Header: hdr(ExchangeIdentityProt, 0), Payloads: []Payload{sa}}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := got.Payloads[0].(*SA); !ok || p.DOI != DOIGDOI || len(p.Proposals) != 1 {
		t.Fatalf("phase-1 SA with the GDOI DOI parsed as %T", got.Payloads[0])
	}
	if _, err := ParsePayloadsIn(ExchangePull, PayloadSA, b[HeaderLen:]); err == nil {
		t.Fatal("the same octets parsed as a GDOI group SA")
	}
}
