package isakmp

import (
	"bytes"
	"testing"
)

// proves: groundwork (codec) — an LKH key packet parses and re-emits, and
// its arrays decode field by field (RFC 6407 §5.6.3).
func TestLKHKeyPacket(t *testing.T) {
	download := unhex(t, `
		01 0002 00                  # version 1, two keys, RESERVED
		0001 03 00 5f5e1000 5f5e2000 00000011 a1a2a3a4   # LKH ID 1, AES, created, expires, handle 17, key
		0002 03 00 5f5e1000 5f5e2000 00000012 b1b2b3b4`)
	update := unhex(t, `
		01 0001 00 0007 0000 00000099     # version 1, one key, LKH ID 7, handle 0x99
		0003 03 00 00000001 00000002 00000013 c1c2c3c4`)
	kd := &KD{Packets: []*KeyPacket{{KDType: KDLKH, SPI: seq16(0), Attributes: Attributes{
		VarAttr(LKHDownloadArray, download), VarAttr(LKHUpdateArray, update), VarAttr(LKHSigKey, []byte{0x30, 0x00})}}}}
	b, err := MarshalPayload(kd)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := ParsePayloads(PayloadKD, b)
	if err != nil {
		t.Fatal(err)
	}
	k := ps[0].(*KD).Packet(KDLKH, seq16(0))
	if k == nil || len(k.Attributes) != 3 {
		t.Fatalf("LKH key packet not found: %+v", ps[0])
	}
	arr, err := ParseLKHArray(k.Attributes[0].Data, false, 4)
	if err != nil {
		t.Fatal(err)
	}
	if arr.Version != 1 || len(arr.Keys) != 2 || arr.Keys[1].ID != 2 || arr.Keys[1].Handle != 0x12 ||
		arr.Keys[0].KeyType != KEKAlgAES || !bytes.Equal(arr.Keys[1].KeyData, []byte{0xb1, 0xb2, 0xb3, 0xb4}) {
		t.Fatalf("download array decoded wrong: %+v", arr)
	}
	if !bytes.Equal(arr.Append(nil), download) {
		t.Fatal("download array does not re-emit")
	}
	up, err := ParseLKHArray(k.Attributes[1].Data, true, 4)
	if err != nil || up.LKHID != 7 || up.Handle != 0x99 || len(up.Keys) != 1 || up.Keys[0].Expires != 2 {
		t.Fatalf("update array: %+v %v", up, err)
	}
	if a := up.Attribute(); a.Type != LKHUpdateArray || !bytes.Equal(a.Data, update) {
		t.Fatal("update array does not re-emit")
	}
	if _, err := ParseLKHArray(download, false, 5); err == nil {
		t.Fatal("wrong key data length accepted")
	}
	if _, err := ParseLKHArray([]byte{1, 0xff, 0xff, 0}, false, 16); err == nil {
		t.Fatal("65535 keys in 4 octets accepted")
	}
	for i := range download {
		if _, err := ParseLKHArray(download[:i], false, 4); err == nil {
			t.Fatalf("download array truncated to %d octets accepted", i)
		}
	}
}
