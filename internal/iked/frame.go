// Package iked is the IKE broker of the group `ike` (SPEC D1, DESIGN.md §1).
// GDOI (RFC 6407, an IKEv1 / ISAKMP header: version octet 0x10 at offset
// 17, RFC 2408 §3.1) and G-IKEv2 (RFC 9838, an IKEv2 header: version octet
// 0x20 at offset 17, RFC 7296 §3.1) share UDP port 848. When the group runs,
// iked owns UDP 848, 500 and 4500 on every address of every up interface
// (one socket per address and port, so that a reply leaves from the address
// the peer used) and hands each datagram, with its local and remote
// address, to the protocol daemon registered for its IKE major version
// (isakmpd for 1, ikev2d for 2). The daemons' replies go back out through
// iked from the local address named in the frame. On the NAT-T port (4500)
// iked strips the 4-octet non-ESP marker before forwarding and adds it
// back on sends (RFC 3948 §2.2); datagrams there without the marker are
// ESP and are dropped and counted.
//
// The daemons talk to iked over a unix SOCK_SEQPACKET socket, one frame per
// message; this file is the frame codec.
package iked

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// APIVersion is the version of the broker protocol spoken here. A hello
// naming another version is refused. Version 2 added the stats request
// and answer (a daemon of version 1 never asks; one of version 2 must not
// wait on an iked that would count its request as a bad frame).
const APIVersion = 2

// FrameType is the first octet of every frame.
type FrameType uint8

// Frame types.
const (
	// FrameHello: daemon → iked, the first frame of a connection: the
	// daemon's name, the IKE major version it serves and the API version.
	FrameHello FrameType = 1
	// FrameWelcome: iked → daemon, the answer to the hello: OK and the
	// addresses iked serves, or an error message.
	FrameWelcome FrameType = 2
	// FrameDatagram: either way, one UDP payload with its local and remote
	// address (iked → daemon: received on Local from Remote; daemon → iked:
	// send from Local to Remote).
	FrameDatagram FrameType = 3
	// FrameAddrsRequest: daemon → iked, which addresses are served now.
	FrameAddrsRequest FrameType = 4
	// FrameAddrsAnswer: iked → daemon, the answer carrying the request ID.
	FrameAddrsAnswer FrameType = 5
	// FrameSetMulticast: daemon → iked, set the outgoing interface and TTL
	// of multicast sends from the socket of Local (RFC 6407 §4.2 rekeys).
	FrameSetMulticast FrameType = 6
	// FrameResult: iked → daemon, the outcome of a set-multicast request.
	FrameResult FrameType = 7
	// FrameStatsRequest: daemon → iked, the broker's counters (API 2).
	FrameStatsRequest FrameType = 8
	// FrameStatsAnswer: iked → daemon, the counters by name, carrying the
	// request ID (API 2).
	FrameStatsAnswer FrameType = 9
)

// Bounds of the codec. A frame breaking one is malformed.
const (
	// MaxPayload is the largest UDP payload carried (RFC 768 length field).
	MaxPayload = 65535
	// MaxName bounds a daemon name in a hello.
	MaxName = 64
	// MaxIfName bounds an interface name (Linux IFNAMSIZ is 16).
	MaxIfName = 64
	// MaxMessage bounds an error message.
	MaxMessage = 1024
	// MaxAddrs bounds an address list.
	MaxAddrs = 4096
	// MaxCounters bounds the counters of a stats answer, MaxCounterName
	// the length of one's name (snake_case: a-z, 0-9, _).
	MaxCounters    = 64
	MaxCounterName = 64
	// MaxFrame is the largest frame the codec produces or accepts.
	MaxFrame = 1 + 2*addrPortMax + MaxPayload
)

// addrPortMax is the largest encoded AddrPort: length octet, 16 octets of
// IPv6 address, 2 octets of port.
const addrPortMax = 1 + 16 + 2

// Frame is one message on the broker socket. Which fields are meaningful
// depends on Type:
//
//	Hello:        Name, IKEVersion, API
//	Welcome:      OK, Message (when !OK), Addrs (when OK)
//	Datagram:     Local, Remote, Payload
//	AddrsRequest: ID
//	AddrsAnswer:  ID, Addrs
//	SetMulticast: ID, Local, IfName, TTL
//	Result:       ID, OK, Message (when !OK)
//	StatsRequest: ID
//	StatsAnswer:  ID, Counters
type Frame struct {
	Type       FrameType
	Name       string
	IKEVersion uint8
	API        uint8
	OK         bool
	Message    string
	Addrs      []netip.AddrPort
	ID         uint32
	Local      netip.AddrPort
	Remote     netip.AddrPort
	// Payload aliases the buffer given to ParseFrame.
	Payload []byte
	IfName  string
	TTL     uint8
	// Counters are the broker's counters in a stats answer.
	Counters []FrameCounter
}

// FrameCounter is one counter of a stats answer: a stable snake_case
// name (Stats.Counters) and its value.
type FrameCounter struct {
	Name  string
	Value uint64
}

// ErrMalformed wraps every parse error.
var ErrMalformed = errors.New("iked: malformed frame")

// Wire format (all integers big-endian):
//
//	frame     = type(1) body
//	Hello     = api(1) ikeVersion(1) nameLen(1) name
//	Welcome   = ok(1) msgLen(2) msg addrCount(2) addrport*
//	Datagram  = addrport(local) addrport(remote) payload(rest of the message)
//	AddrsReq  = id(4)
//	AddrsAns  = id(4) addrCount(2) addrport*
//	SetMcast  = id(4) addrport(local) ttl(1) ifNameLen(1) ifName
//	Result    = id(4) ok(1) msgLen(2) msg
//	StatsReq  = id(4)
//	StatsAns  = id(4) count(1) counter*
//	counter   = nameLen(1) name value(8)
//	addrport  = len(1: 4 or 16) addr(len) port(2)
//
// A frame is exactly one SOCK_SEQPACKET message, so the datagram payload
// needs no length of its own; trailing octets after any other frame make
// it malformed.

// AppendFrame appends the encoding of f to b. It refuses a frame that
// breaks a bound, so that what it sends always parses.
func AppendFrame(b []byte, f *Frame) ([]byte, error) {
	b = append(b, byte(f.Type))
	var err error
	switch f.Type {
	case FrameHello:
		if len(f.Name) == 0 || len(f.Name) > MaxName {
			return nil, fmt.Errorf("iked: hello: name of %d octets (1..%d)", len(f.Name), MaxName)
		}
		b = append(b, f.API, f.IKEVersion, byte(len(f.Name)))
		b = append(b, f.Name...)
	case FrameWelcome:
		b = append(b, boolOctet(f.OK))
		if b, err = appendString16(b, f.Message, MaxMessage); err != nil {
			return nil, err
		}
		if b, err = appendAddrs(b, f.Addrs); err != nil {
			return nil, err
		}
	case FrameDatagram:
		if len(f.Payload) > MaxPayload {
			return nil, fmt.Errorf("iked: datagram of %d octets exceeds %d", len(f.Payload), MaxPayload)
		}
		if b, err = appendAddrPort(b, f.Local); err != nil {
			return nil, err
		}
		if b, err = appendAddrPort(b, f.Remote); err != nil {
			return nil, err
		}
		b = append(b, f.Payload...)
	case FrameAddrsRequest:
		b = binary.BigEndian.AppendUint32(b, f.ID)
	case FrameAddrsAnswer:
		b = binary.BigEndian.AppendUint32(b, f.ID)
		if b, err = appendAddrs(b, f.Addrs); err != nil {
			return nil, err
		}
	case FrameSetMulticast:
		b = binary.BigEndian.AppendUint32(b, f.ID)
		if b, err = appendAddrPort(b, f.Local); err != nil {
			return nil, err
		}
		if len(f.IfName) > MaxIfName {
			return nil, fmt.Errorf("iked: interface name of %d octets exceeds %d", len(f.IfName), MaxIfName)
		}
		b = append(b, f.TTL, byte(len(f.IfName)))
		b = append(b, f.IfName...)
	case FrameResult:
		b = binary.BigEndian.AppendUint32(b, f.ID)
		b = append(b, boolOctet(f.OK))
		if b, err = appendString16(b, f.Message, MaxMessage); err != nil {
			return nil, err
		}
	case FrameStatsRequest:
		b = binary.BigEndian.AppendUint32(b, f.ID)
	case FrameStatsAnswer:
		b = binary.BigEndian.AppendUint32(b, f.ID)
		if len(f.Counters) > MaxCounters {
			return nil, fmt.Errorf("iked: %d counters exceed %d", len(f.Counters), MaxCounters)
		}
		b = append(b, byte(len(f.Counters)))
		for _, c := range f.Counters {
			if !counterName(c.Name) {
				return nil, fmt.Errorf("iked: counter name %q is not snake_case of 1..%d octets", c.Name, MaxCounterName)
			}
			b = append(b, byte(len(c.Name)))
			b = append(b, c.Name...)
			b = binary.BigEndian.AppendUint64(b, c.Value)
		}
	default:
		return nil, fmt.Errorf("iked: unknown frame type %d", f.Type)
	}
	return b, nil
}

// counterName reports whether s is a counter name the codec carries:
// 1..MaxCounterName octets of a-z, 0-9 and _, so that what a show command
// prints from the broker is plain text.
func counterName(s string) bool {
	if len(s) == 0 || len(s) > MaxCounterName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// ParseFrame decodes one frame. Payload aliases b. Every error wraps
// ErrMalformed; it never panics (FuzzParseFrame).
func ParseFrame(b []byte) (Frame, error) {
	var f Frame
	if len(b) > MaxFrame {
		return f, fmt.Errorf("%w: %d octets exceeds %d", ErrMalformed, len(b), MaxFrame)
	}
	r := reader{b: b}
	f.Type = FrameType(r.u8())
	switch f.Type {
	case FrameHello:
		f.API = r.u8()
		f.IKEVersion = r.u8()
		n := int(r.u8())
		if n == 0 || n > MaxName {
			r.fail("name length %d", n)
		}
		f.Name = string(r.bytes(n))
	case FrameWelcome:
		f.OK = r.bool()
		f.Message = r.string16(MaxMessage)
		f.Addrs = r.addrs()
	case FrameDatagram:
		f.Local = r.addrPort()
		f.Remote = r.addrPort()
		f.Payload = r.rest()
		if len(f.Payload) > MaxPayload {
			r.fail("payload of %d octets", len(f.Payload))
		}
	case FrameAddrsRequest:
		f.ID = r.u32()
	case FrameAddrsAnswer:
		f.ID = r.u32()
		f.Addrs = r.addrs()
	case FrameSetMulticast:
		f.ID = r.u32()
		f.Local = r.addrPort()
		f.TTL = r.u8()
		n := int(r.u8())
		if n > MaxIfName {
			r.fail("interface name length %d", n)
		}
		f.IfName = string(r.bytes(n))
	case FrameResult:
		f.ID = r.u32()
		f.OK = r.bool()
		f.Message = r.string16(MaxMessage)
	case FrameStatsRequest:
		f.ID = r.u32()
	case FrameStatsAnswer:
		f.ID = r.u32()
		f.Counters = r.counters()
	default:
		if r.err == nil {
			r.fail("unknown type %d", f.Type)
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing octets", len(r.b))
	}
	if r.err != nil {
		return Frame{}, r.err
	}
	return f, nil
}

func boolOctet(v bool) byte {
	if v {
		return 1
	}
	return 0
}

func appendString16(b []byte, s string, max int) ([]byte, error) {
	if len(s) > max {
		return nil, fmt.Errorf("iked: message of %d octets exceeds %d", len(s), max)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...), nil
}

func appendAddrPort(b []byte, a netip.AddrPort) ([]byte, error) {
	if !a.IsValid() {
		return nil, fmt.Errorf("iked: invalid address %v", a)
	}
	ip := a.Addr()
	if ip.Zone() != "" {
		return nil, fmt.Errorf("iked: address %v has a zone", a)
	}
	s := ip.AsSlice()
	b = append(b, byte(len(s)))
	b = append(b, s...)
	return binary.BigEndian.AppendUint16(b, a.Port()), nil
}

func appendAddrs(b []byte, addrs []netip.AddrPort) ([]byte, error) {
	if len(addrs) > MaxAddrs {
		return nil, fmt.Errorf("iked: %d addresses exceed %d", len(addrs), MaxAddrs)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(addrs)))
	var err error
	for _, a := range addrs {
		if b, err = appendAddrPort(b, a); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// reader consumes a frame; the first error sticks and later reads return
// zero values.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	r.b = nil
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.fail("truncated: need %d octets, have %d", n, len(r.b))
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) rest() []byte {
	if r.err != nil {
		return nil
	}
	v := r.b
	r.b = nil
	return v
}

func (r *reader) u8() uint8 {
	v := r.bytes(1)
	if v == nil {
		return 0
	}
	return v[0]
}

func (r *reader) u16() uint16 {
	v := r.bytes(2)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint16(v)
}

func (r *reader) u32() uint32 {
	v := r.bytes(4)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint32(v)
}

func (r *reader) bool() bool {
	v := r.u8()
	if v > 1 {
		r.fail("boolean octet %d", v)
	}
	return v == 1
}

func (r *reader) string16(max int) string {
	n := int(r.u16())
	if n > max {
		r.fail("string of %d octets exceeds %d", n, max)
		return ""
	}
	return string(r.bytes(n))
}

func (r *reader) addrPort() netip.AddrPort {
	n := int(r.u8())
	if r.err != nil {
		return netip.AddrPort{}
	}
	if n != 4 && n != 16 {
		r.fail("address length %d", n)
		return netip.AddrPort{}
	}
	ip, _ := netip.AddrFromSlice(r.bytes(n))
	port := r.u16()
	if r.err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ip, port)
}

func (r *reader) addrs() []netip.AddrPort {
	n := int(r.u16())
	if n > MaxAddrs {
		r.fail("%d addresses exceed %d", n, MaxAddrs)
	}
	if r.err != nil || n == 0 {
		return nil
	}
	if len(r.b) < n*(1+4+2) {
		r.fail("truncated address list of %d", n)
		return nil
	}
	out := make([]netip.AddrPort, 0, n)
	for range n {
		out = append(out, r.addrPort())
	}
	return out
}

func (r *reader) u64() uint64 {
	v := r.bytes(8)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func (r *reader) counters() []FrameCounter {
	n := int(r.u8())
	if n > MaxCounters {
		r.fail("%d counters exceed %d", n, MaxCounters)
	}
	if r.err != nil || n == 0 {
		return nil
	}
	if len(r.b) < n*(1+1+8) {
		r.fail("truncated list of %d counters", n)
		return nil
	}
	out := make([]FrameCounter, 0, n)
	for range n {
		name := string(r.bytes(int(r.u8())))
		v := r.u64()
		if r.err != nil {
			return nil
		}
		if !counterName(name) {
			r.fail("counter name %q", name)
			return nil
		}
		out = append(out, FrameCounter{Name: name, Value: v})
	}
	return out
}
