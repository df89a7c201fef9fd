package pcap

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

func TestWriteUDPRecord(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte("hello gdoi")
	src, dst := netip.MustParseAddrPort("192.0.2.1:848"), netip.MustParseAddrPort("192.0.2.2:848")
	if err := w.WriteUDP(time.Unix(1700000000, 5000), src, dst, payload); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if binary.LittleEndian.Uint32(b) != magic || binary.LittleEndian.Uint32(b[20:]) != linkRaw {
		t.Fatalf("bad file header %x", b[:24])
	}
	rec := b[24:]
	if n := binary.LittleEndian.Uint32(rec[8:]); n != 20+8+uint32(len(payload)) {
		t.Fatalf("record length %d", n)
	}
	ip := rec[16 : 16+20]
	if checksum(0, ip) != 0 {
		t.Fatalf("IPv4 header checksum does not verify: %x", ip)
	}
	udp := rec[16+20:]
	if binary.BigEndian.Uint16(udp[2:]) != 848 || !bytes.Equal(udp[8:], payload) {
		t.Fatalf("bad UDP datagram %x", udp)
	}
	if err := w.WriteUDP(time.Now(), netip.MustParseAddrPort("[::1]:1"), dst, nil); err == nil {
		t.Fatal("IPv6 accepted")
	}
}

func TestWritePacketRecord(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	pkt := []byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 50, 0, 0, 10, 1, 1, 2, 10, 1, 2, 2}
	if err := w.WritePacket(time.Unix(1700000000, 0), pkt); err != nil {
		t.Fatal(err)
	}
	rec := buf.Bytes()[24:]
	if n := binary.LittleEndian.Uint32(rec[8:]); n != uint32(len(pkt)) || !bytes.Equal(rec[16:], pkt) {
		t.Fatalf("record %x", rec)
	}
	if err := w.WritePacket(time.Now(), nil); err == nil {
		t.Fatal("empty packet accepted")
	}
}
