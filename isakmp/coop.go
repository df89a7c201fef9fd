package isakmp

import (
	"fmt"
	"net/netip"
)

// COOP announcements (ANN) between cooperative key servers have no public
// encoding; groupvpn's open one is defined here and in docs/wire.md
// ("COOP announcements"). An ANN is
//
//	HDR*(exchange ExchangeCOOPAnn), HASH, SEQ, ID(group), COOP [, SA, KD] [, MEMBERS]
//
// protected by the KS-KS IKEv1 phase-1 SA like a GROUPKEY-PULL message.
// The COOP and MEMBERS payloads use private-use payload types (RFC 2408
// §3.1: 128-255); everything else is a standard payload.

// ExchangeCOOPAnn is the exchange type of a COOP announcement: the first
// value of the private-use range 240-255 (RFC 2408 §3.1). The GDOI's
// DOI-specific values (32-239) are assigned by IANA (32, 33, 35 so far), so
// groupvpn does not take one of them.
const ExchangeCOOPAnn ExchangeType = 240

// PayloadCOOP and PayloadMembers are groupvpn's private-use payload types
// (RFC 2408 §3.1: 128-255). 130-132 are avoided: Wireshark names them after
// drafts (NAT-D, NAT-OA) and Cisco fragmentation.
const (
	PayloadCOOP    PayloadType = 192 // KS state in a COOP announcement
	PayloadMembers PayloadType = 193 // a part of the group's member list
)

// SWVersion is a groupvpn software version major.minor.mini (SPEC V1); it
// converts to and from internal/version.Version.
type SWVersion struct{ Major, Minor, Mini uint8 }

func (v SWVersion) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Mini) }

// COOPRole is the role a KS announces; internal/coop's Role has the same
// values.
type COOPRole uint8

const (
	RoleElecting  COOPRole = 1 // no role yet: the election is running
	RolePrimary   COOPRole = 2
	RoleSecondary COOPRole = 3
)

var coopRoleNames = map[COOPRole]string{RoleElecting: "ELECTING", RolePrimary: "PRIMARY", RoleSecondary: "SECONDARY"}

func (r COOPRole) String() string { return nameOf(coopRoleNames, r, "ROLE") }

// COOPFlags are the COOP payload's flags; undefined bits must be zero.
type COOPFlags uint8

const (
	// COOPFullSyncRequest asks the receiver to send its policy, keys and
	// its whole member list (a KS that starts, or finds a generation gap).
	COOPFullSyncRequest COOPFlags = 0x01
	// COOPReplyRequest asks the receiver to announce back at once
	// (internal/coop's Announcement.ReplyRequest: a KS that starts, or
	// hears a peer it had not heard).
	COOPReplyRequest COOPFlags = 0x02

	coopFlagsDefined = COOPFullSyncRequest | COOPReplyRequest
)

// COOPFormat is the value of the COOP payload's Format octet; a payload
// with any other value is refused (a later layout changes it).
const COOPFormat = 1

// Bounds of the COOP payload, enforced when reading.
const (
	MaxCOOPState    = 512        // octets of opaque election state
	MaxCOOPInterval = 86_400_000 // ms: announcement period and dead interval (one day)
	coopFixedLen    = 32
)

// COOP is the COOP payload (groupvpn private use, type 192; docs/wire.md):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	! Next Payload  !   RESERVED    !         Payload Length        !
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	!  Format (1)   ! Version Major ! Version Minor ! Version Mini  !
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	!     Role      !     Flags     !   Priority    ! KS Addr Type  !
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	!                 Announcement Period (ms)                      !
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	!                      Dead Interval (ms)                       !
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	!                 Rekey (GROUPKEY-PUSH) Sequence                !
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	!                                                               !
//	+                    Member List Generation                     +
//	!                                                               !
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	!         State Length          !           RESERVED            !
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                KS Address (4 or 16 octets)                    ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                  State (State Length octets)                  ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// KS Addr Type is ID_IPV4_ADDR (1) or ID_IPV6_ADDR (5). The reader refuses
// another format, role, address type or flag, priority 0, an unspecified address, a
// period or dead interval of 0 or above MaxCOOPInterval, a dead interval
// shorter than the period, and State above MaxCOOPState.
type COOP struct {
	Version    SWVersion // the sender's announced software version (SPEC V3)
	Role       COOPRole
	Flags      COOPFlags
	Priority   uint8      // `local priority` (Cisco: 1-255)
	Address    netip.Addr // the sender's KS address, the election's tie-break; an invalid one is written as 0.0.0.0
	PeriodMS   uint32     // announcement period the sender runs with
	DeadMS     uint32     // dead interval the sender runs with
	RekeySeq   uint32     // the group's GROUPKEY-PUSH sequence number as the sender knows it
	MembersGen uint64     // generation of the sender's member list
	State      []byte     // opaque election state, at most MaxCOOPState octets
}

func (*COOP) Type() PayloadType { return PayloadCOOP }

func (p *COOP) BodyLen() int { return coopFixedLen + addrLen(p.Address) + len(p.State) }

func (p *COOP) AppendBody(b []byte) []byte {
	at, ab := addrWire(p.Address)
	b = append(b, COOPFormat, p.Version.Major, p.Version.Minor, p.Version.Mini)
	b = append(b, byte(p.Role), byte(p.Flags), p.Priority, byte(at))
	b = appendU32(b, p.PeriodMS)
	b = appendU32(b, p.DeadMS)
	b = appendU32(b, p.RekeySeq)
	b = appendU64(b, p.MembersGen)
	b = appendU16(b, uint16(len(p.State)))
	b = append(b, 0, 0)
	b = append(b, ab...)
	return append(b, p.State...)
}

func parseCOOP(b []byte) (*COOP, error) {
	r := newReader("COOP payload", b)
	if f := r.u8(); r.err == nil && f != COOPFormat {
		r.fail("format %d, want %d", f, COOPFormat)
	}
	p := &COOP{Version: SWVersion{r.u8(), r.u8(), r.u8()}}
	p.Role = COOPRole(r.u8())
	p.Flags = COOPFlags(r.u8())
	p.Priority = r.u8()
	at := IDType(r.u8())
	p.PeriodMS = r.u32()
	p.DeadMS = r.u32()
	p.RekeySeq = r.u32()
	p.MembersGen = r.u64()
	n := int(r.u16())
	r.reserved(2, "RESERVED")
	if r.err == nil {
		switch {
		case p.Role < RoleElecting || p.Role > RoleSecondary:
			r.fail("role %d is not defined", p.Role)
		case p.Flags&^coopFlagsDefined != 0:
			r.fail("undefined flags 0x%02x", uint8(p.Flags&^coopFlagsDefined))
		case p.Priority == 0:
			r.fail("priority 0")
		case p.PeriodMS == 0 || p.PeriodMS > MaxCOOPInterval:
			r.fail("announcement period %d ms outside 1..%d", p.PeriodMS, MaxCOOPInterval)
		case p.DeadMS < p.PeriodMS || p.DeadMS > MaxCOOPInterval:
			r.fail("dead interval %d ms outside %d..%d", p.DeadMS, p.PeriodMS, MaxCOOPInterval)
		case n > MaxCOOPState:
			r.fail("state of %d octets exceeds %d", n, MaxCOOPState)
		}
	}
	p.Address = r.addr(at, "KS address")
	p.State = r.bytes(n)
	return p, r.done()
}

// addrLen is the wire length of a on the wire: 16 for IPv6, else 4.
func addrLen(a netip.Addr) int {
	if a.Is6() {
		return 16
	}
	return 4
}

// addrWire returns the ID type and octets of a; an invalid address is
// written as 0.0.0.0, which every reader here refuses.
func addrWire(a netip.Addr) (IDType, []byte) {
	if a.Is6() {
		b := a.As16()
		return IDIPv6Addr, b[:]
	}
	if a.Is4() {
		b := a.As4()
		return IDIPv4Addr, b[:]
	}
	return IDIPv4Addr, make([]byte, 4)
}

// addr reads an address of ID type t (ID_IPV4_ADDR or ID_IPV6_ADDR only)
// and refuses an unspecified one.
func (r *reader) addr(t IDType, field string) netip.Addr {
	if r.err != nil {
		return netip.Addr{}
	}
	var a netip.Addr
	switch t {
	case IDIPv4Addr:
		if s := r.take(4); s != nil {
			a = netip.AddrFrom4([4]byte(s))
		}
	case IDIPv6Addr:
		if s := r.take(16); s != nil {
			a = netip.AddrFrom16([16]byte(s))
		}
	default:
		r.fail("%s type %s is not ID_IPV4_ADDR or ID_IPV6_ADDR", field, t)
		return netip.Addr{}
	}
	if r.err == nil && a.IsUnspecified() {
		r.fail("%s is unspecified", field)
	}
	return a
}
