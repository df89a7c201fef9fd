// Package pcap writes classic libpcap capture files of IPv4/UDP datagrams
// (or whole captured IP packets), so that third-party dissectors (tshark)
// can read what groupvpn sends.
// Format: the libpcap file format with LINKTYPE_RAW (101), i.e. each record
// is a bare IP packet.
package pcap

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"time"
)

const (
	magic      = 0xa1b2c3d4
	linkRaw    = 101
	snapLen    = 65535
	ipv4HdrLen = 20
	udpHdrLen  = 8
)

// Writer appends IPv4/UDP records to a capture file.
type Writer struct {
	w     io.Writer
	ident uint16
}

// NewWriter writes the file header and returns a Writer.
func NewWriter(w io.Writer) (*Writer, error) {
	h := make([]byte, 24)
	binary.LittleEndian.PutUint32(h[0:], magic)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], snapLen)
	binary.LittleEndian.PutUint32(h[20:], linkRaw)
	if _, err := w.Write(h); err != nil {
		return nil, fmt.Errorf("pcap: write file header: %w", err)
	}
	return &Writer{w: w}, nil
}

// WriteUDP writes one IPv4/UDP datagram carrying payload, stamped ts.
func (w *Writer) WriteUDP(ts time.Time, src, dst netip.AddrPort, payload []byte) error {
	if !src.Addr().Is4() || !dst.Addr().Is4() {
		return fmt.Errorf("pcap: only IPv4 is supported")
	}
	total := ipv4HdrLen + udpHdrLen + len(payload)
	if total > snapLen {
		return fmt.Errorf("pcap: datagram of %d octets is too large", total)
	}
	w.ident++
	pkt := make([]byte, total)
	ip := pkt[:ipv4HdrLen]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(total))
	binary.BigEndian.PutUint16(ip[4:], w.ident)
	ip[8] = 64
	ip[9] = 17
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:], s4[:])
	copy(ip[16:], d4[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(0, ip))

	udp := pkt[ipv4HdrLen:]
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(udpHdrLen+len(payload)))
	copy(udp[udpHdrLen:], payload)
	pseudo := make([]byte, 0, 12)
	pseudo = append(pseudo, s4[:]...)
	pseudo = append(pseudo, d4[:]...)
	pseudo = append(pseudo, 0, 17)
	pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(len(udp)))
	sum := checksum(checksum(0, pseudo), udp)
	if sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], sum)

	return w.record(ts, pkt)
}

// WritePacket writes one whole IP packet as captured (header included),
// stamped ts: what a capture of any protocol (ESP) records.
func (w *Writer) WritePacket(ts time.Time, pkt []byte) error {
	if len(pkt) == 0 || len(pkt) > snapLen {
		return fmt.Errorf("pcap: packet of %d octets", len(pkt))
	}
	return w.record(ts, pkt)
}

func (w *Writer) record(ts time.Time, pkt []byte) error {
	rec := make([]byte, 16, 16+len(pkt))
	binary.LittleEndian.PutUint32(rec[0:], uint32(ts.Unix()))
	binary.LittleEndian.PutUint32(rec[4:], uint32(ts.Nanosecond()/1000))
	binary.LittleEndian.PutUint32(rec[8:], uint32(len(pkt)))
	binary.LittleEndian.PutUint32(rec[12:], uint32(len(pkt)))
	if _, err := w.w.Write(append(rec, pkt...)); err != nil {
		return fmt.Errorf("pcap: write record: %w", err)
	}
	return nil
}

// checksum folds b into the one's-complement sum (RFC 1071) and returns
// the complement; chain calls by passing the previous result's complement.
func checksum(prev uint16, b []byte) uint16 {
	sum := uint32(^prev)
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
