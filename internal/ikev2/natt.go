package ikev2

import (
	"crypto/sha1"
	"crypto/subtle"
	"encoding/binary"
	"net/netip"

	wire "github.com/groupvpn/groupvpn/ikev2"
)

// NATTPort is the UDP port of NAT traversal (RFC 3948, RFC 7296 §2.23):
// IKE messages on it start with the four-octet non-ESP marker, which the
// transport adds and strips (Packet.NATT).
const NATTPort = 4500

// natdHash is SHA-1(SPIi | SPIr | IP | Port) of a NAT_DETECTION_*_IP
// notification, with the SPIs as the message's header carries them
// (§2.23).
func natdHash(spii, spir wire.SPI, a netip.AddrPort) []byte {
	h := sha1.New()
	h.Write(spii[:])
	h.Write(spir[:])
	h.Write(a.Addr().Unmap().AsSlice())
	h.Write(binary.BigEndian.AppendUint16(nil, a.Port()))
	return h.Sum(nil)
}

// natdNotifies are our NAT_DETECTION_SOURCE_IP and _DESTINATION_IP.
func (sa *SA) natdNotifies() []wire.Payload {
	if !sa.cfg.NATT {
		return nil
	}
	return []wire.Payload{
		&wire.Notify{NotifyType: wire.NotifyNATDetectionSourceIP, Data: natdHash(sa.spii, sa.spir, sa.local)},
		&wire.Notify{NotifyType: wire.NotifyNATDetectionDestinationIP, Data: natdHash(sa.spii, sa.spir, sa.peer)},
	}
}

// natDetected reports whether the peer's NAT_DETECTION notifications of
// message h say an address was translated between us (or the peer fakes
// it, as strongSwan's encap = yes does to force UDP encapsulation). No
// notifications: the peer does not do NAT traversal, false.
func (sa *SA) natDetected(h wire.Header, ps []wire.Payload) bool {
	var src [][]byte
	var dst []byte
	for _, n := range wire.Notifies(ps) {
		switch n.NotifyType {
		case wire.NotifyNATDetectionSourceIP:
			if len(src) < 8 {
				src = append(src, n.Data)
			}
		case wire.NotifyNATDetectionDestinationIP:
			dst = n.Data
		}
	}
	if len(src) == 0 || dst == nil {
		return false
	}
	if subtle.ConstantTimeCompare(dst, natdHash(h.SPIi, h.SPIr, sa.local)) != 1 {
		return true
	}
	want := natdHash(h.SPIi, h.SPIr, sa.peer)
	for _, s := range src {
		if subtle.ConstantTimeCompare(s, want) == 1 {
			return false
		}
	}
	return true
}
