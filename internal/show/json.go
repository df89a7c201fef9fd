package show

// The `| json` schema (docs/json.md): explicit view types, one per show
// command, and the one place that maps a node.Snapshot (and what the
// daemon adds) onto them. Internal structs never reach `| json`: a field
// renamed or added inside ks, gm, node or sadb changes nothing here until
// it is mapped, so the schema only moves when this file does.
//
// Conventions (checked on every golden file by TestJSONConventions):
//   - every key is snake_case;
//   - durations are seconds, in keys ending in _seconds: integers, except
//     pseudotime_seconds and took_seconds (decimals, sub-second matters);
//   - times are RFC 3339 UTC strings with second precision, in keys ending
//     in _at (show clock's "clock" has milliseconds);
//   - enums are lowercase names ("registered", "primary", "fail-close");
//     IOS keywords keep their IOS spelling ("esp-aes", "permit");
//   - SPIs and cookies are lowercase hex strings with a 0x prefix, as wide
//     as the field (TEK SPI 8 digits, KEK SPI 32, cookies 16);
//   - addresses and prefixes are strings, ports numbers;
//   - a value that does not exist is absent (omitempty), never a zero time,
//     an empty string or an empty list; a count or a remaining time that
//     is 0 is printed as 0.

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/keystore"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/tmd"
	"github.com/groupvpn/groupvpn/isakmp"
)

// Schema names the `| json` schema and its version. Adding a key keeps
// the version; renaming or removing one, or changing a value's type or
// unit, bumps it (docs/json.md).
const Schema = "groupvpn.show/1"

// Header starts every show command's JSON object.
type Header struct {
	Schema      string `json:"schema"`                 // Schema
	Command     string `json:"command"`                // the command in full, without filters
	GeneratedAt string `json:"generated_at,omitempty"` // when the state was read
}

// NewHeader is the header of command's JSON, its state read at now.
func NewHeader(command string, now time.Time) Header {
	return Header{Schema: Schema, Command: command, GeneratedAt: jsonTime(now)}
}

// jsonTime is t as RFC 3339 UTC (second precision); "" for the zero time.
func jsonTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func spiHex(spi uint32) string { return fmt.Sprintf("0x%08x", spi) }

// bytesHex is b as 0x-prefixed lowercase hex; "" when b is all zeros.
func bytesHex(b []byte) string {
	for _, c := range b {
		if c != 0 {
			return "0x" + hex.EncodeToString(b)
		}
	}
	return ""
}

func versionString(v interface {
	IsZero() bool
	String() string
}) string {
	if v.IsZero() {
		return ""
	}
	return v.String()
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func prefixString(p netip.Prefix) string {
	if !p.IsValid() {
		return "0.0.0.0/0"
	}
	return p.String()
}

// protoName is an IP protocol as an IOS ACL names it ("ip": any), else
// its number.
func protoName(p uint8) string {
	if s, ok := map[uint8]string{0: "ip", 1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 51: "ahp",
		88: "eigrp", 89: "ospf", 103: "pim"}[p]; ok {
		return s
	}
	return fmt.Sprint(p)
}

func transformList(tr uint8, authAlg uint16) []string {
	return strings.Fields(strings.ToLower(transformName(tr, authAlg)))
}

func sigAlgName(a isakmp.SigAlg) string {
	switch a {
	case isakmp.SigAlgRSA:
		return "rsa"
	case isakmp.SigAlgDSS:
		return "dss"
	case isakmp.SigAlgECDSS:
		return "ecdss"
	case isakmp.SigAlgECDSA256:
		return "ecdsa-256"
	case isakmp.SigAlgECDSA384:
		return "ecdsa-384"
	case isakmp.SigAlgECDSA521:
		return "ecdsa-521"
	case 0:
		return ""
	}
	return fmt.Sprintf("unknown-%d", a)
}

func kekAlgName(a isakmp.KEKAlg) string {
	switch a {
	case isakmp.KEKAlgAES:
		return "aes"
	case isakmp.KEKAlg3DES:
		return "3des"
	case isakmp.KEKAlgDES:
		return "des"
	}
	return fmt.Sprintf("unknown-%d", a)
}

func tekProtoName(p isakmp.TEKProtocol) string {
	switch p {
	case isakmp.TEKProtoESP:
		return "esp"
	case isakmp.TEKProtoAH:
		return "ah"
	}
	return fmt.Sprintf("unknown-%d", p)
}

// regStateName is a GM registration's state (node.MemberState.State).
func regStateName(s string) string {
	switch s {
	case "idle", "registering", "registered":
		return s
	case "phase 1":
		return "phase1"
	}
	return strings.ReplaceAll(strings.ToLower(s), " ", "_")
}

func failModeName(m sadb.FailMode) string {
	if m == sadb.FailClose {
		return "fail-close"
	}
	return "fail-open"
}

func rekeyTransport(unicast bool) string {
	if unicast {
		return "unicast"
	}
	return "multicast"
}

func optSecs(d time.Duration) *int64 { v := secs(d); return &v }

// ReplayJSON is a TEK's anti-replay: method "counter" (window in
// packets), "time" (TBAR, window in seconds) or "none".
type ReplayJSON struct {
	Method        string `json:"method"`
	WindowPackets int    `json:"window_packets,omitempty"`
	WindowSeconds int    `json:"window_seconds,omitempty"`
}

func replayJSON(method uint16, window int) ReplayJSON {
	r := ReplayJSON{Method: replayName(method)}
	switch method {
	case isakmp.ReplayCounter:
		r.WindowPackets = window
	case isakmp.ReplayTime:
		r.WindowSeconds = window
	}
	return r
}

// ACLEntryJSON is one access-list entry: protocol "ip" is any, a port
// absent is any; spi is the TEK a GM's downloaded permit entry uses.
type ACLEntryJSON struct {
	Action   string `json:"action"` // permit | deny
	Protocol string `json:"protocol"`
	Src      string `json:"src"`
	Dst      string `json:"dst"`
	SrcPort  uint16 `json:"src_port,omitempty"`
	DstPort  uint16 `json:"dst_port,omitempty"`
	SPI      string `json:"spi,omitempty"`
}

func selectorJSON(action string, s ks.Selector) ACLEntryJSON {
	return ACLEntryJSON{Action: action, Protocol: protoName(s.Proto), Src: prefixString(s.Src), Dst: prefixString(s.Dst), SrcPort: s.SrcPort, DstPort: s.DstPort}
}

// ---- show crypto gdoi

// GDOIJSON is `show crypto gdoi | json`.
type GDOIJSON struct {
	Header
	KSGroups []KSGroupJSON `json:"ks_groups,omitempty"`
	GMGroups []GMGroupJSON `json:"gm_groups,omitempty"`
}

// KSGroupJSON is a group this node serves as key server.
type KSGroupJSON struct {
	Name                         string          `json:"name"`
	Identity                     uint32          `json:"identity"`
	KSRole                       string          `json:"ks_role"` // primary | secondary | electing
	RedundancyConfigured         bool            `json:"redundancy_configured"`
	Redundancy                   *RedundancyJSON `json:"redundancy,omitempty"`
	RekeyTransport               string          `json:"rekey_transport"` // unicast | multicast
	MemberCount                  int             `json:"member_count"`
	RekeySequence                uint32          `json:"rekey_sequence"`
	RekeysSent                   int             `json:"rekeys_sent"`
	RekeyRetransmitPeriodSeconds int64           `json:"rekey_retransmit_period_seconds"`
	RekeyRetransmitAttempts      int             `json:"rekey_retransmit_attempts"`
	AddressNotServed             string          `json:"address_not_served,omitempty"`
	PseudotimeSeconds            *float64        `json:"pseudotime_seconds,omitempty"` // TBAR groups only
	NextTBARResyncAt             string          `json:"next_tbar_resync_at,omitempty"`
	LastRekey                    *LastRekeyJSON  `json:"last_rekey,omitempty"`
	KEK                          KSKEKJSON       `json:"kek"`
	TEKs                         []KSTEKJSON     `json:"teks,omitempty"`
}

// RedundancyJSON is a cooperative KS group's local lines of show crypto
// gdoi (Local Address ... Local KS Version).
type RedundancyJSON struct {
	LocalAddress   string `json:"local_address,omitempty"`
	LocalPriority  int    `json:"local_priority"`
	LocalKSStatus  string `json:"local_ks_status"` // alive
	LocalKSRole    string `json:"local_ks_role"`   // primary | secondary | electing
	LocalKSVersion string `json:"local_ks_version,omitempty"`
}

// LastRekeyJSON is the last rekey delivery the KS completed.
type LastRekeyJSON struct {
	Sequence    uint32  `json:"sequence"`
	StartedAt   string  `json:"started_at,omitempty"`
	TookSeconds float64 `json:"took_seconds"`
	Retransmits int     `json:"retransmits"`
}

// KSKEKJSON is a KS group's KEK (its key is never shown).
type KSKEKJSON struct {
	SPI                string `json:"spi,omitempty"`
	KeyBits            int    `json:"key_bits"`
	SignatureAlgorithm string `json:"signature_algorithm,omitempty"`
	LifetimeSeconds    int64  `json:"lifetime_seconds"`
	RemainingSeconds   int64  `json:"remaining_seconds"`
	ExpiresAt          string `json:"expires_at,omitempty"`
}

// KSTEKJSON is one TEK a KS group hands out (IPSec SA Number = number).
type KSTEKJSON struct {
	Number           int            `json:"number"`
	SPI              string         `json:"spi"`
	Profile          string         `json:"profile,omitempty"`
	Transforms       []string       `json:"transforms"`
	KeyBits          int            `json:"key_bits"`
	LifetimeSeconds  int64          `json:"lifetime_seconds"`
	RemainingSeconds int64          `json:"remaining_seconds"`
	ExpiresAt        string         `json:"expires_at,omitempty"`
	Replay           ReplayJSON     `json:"replay"`
	ACL              string         `json:"acl,omitempty"`
	ACLEntries       []ACLEntryJSON `json:"acl_entries"`
}

func ksGroupJSON(s node.Snapshot, g ks.GroupSnapshot) KSGroupJSON {
	v := KSGroupJSON{Name: g.Name, Identity: g.ID, KSRole: "primary", RedundancyConfigured: g.Redundancy != nil,
		RekeyTransport: rekeyTransport(g.Unicast), MemberCount: memberCount(g), RekeySequence: g.Seq, RekeysSent: g.Rekeys,
		RekeyRetransmitPeriodSeconds: secs(g.Retransmit), RekeyRetransmitAttempts: g.Retransmits,
		KEK: KSKEKJSON{SPI: bytesHex(g.KEKSPI[:]), KeyBits: g.KEKBits, SignatureAlgorithm: sigAlgName(g.SigAlg),
			LifetimeSeconds: secs(g.KEKLifetime), RemainingSeconds: secs(g.KEKExpire.Sub(s.Now)), ExpiresAt: jsonTime(g.KEKExpire)}}
	if g.Secondary {
		v.KSRole = "secondary"
	}
	if st, ok := s.COOP[g.Name]; ok {
		v.RedundancyConfigured = true
		v.KSRole = roleKey(st.Role)
		v.Redundancy = &RedundancyJSON{LocalAddress: addrString(st.Local), LocalPriority: int(st.Priority), LocalKSStatus: "alive",
			LocalKSRole: roleKey(st.Role), LocalKSVersion: versionString(st.Version)}
	}
	if a, ok := s.Unserved[g.Name]; ok {
		v.AddressNotServed = addrString(a)
	}
	if r, ok := s.LastRekeys[g.Name]; ok {
		v.LastRekey = &LastRekeyJSON{Sequence: r.Seq, StartedAt: jsonTime(r.Started), TookSeconds: r.Took.Seconds(), Retransmits: r.Retransmits}
	}
	for i, t := range g.TEKs {
		if t.Replay == isakmp.ReplayTime && v.PseudotimeSeconds == nil {
			p := g.Pseudotime.Seconds()
			v.PseudotimeSeconds = &p
			v.NextTBARResyncAt = jsonTime(g.NextResync)
		}
		tv := KSTEKJSON{Number: i + 1, SPI: spiHex(t.SPI), Profile: t.ProfileName, Transforms: transformList(uint8(t.Transform), t.AuthAlg),
			KeyBits: t.KeyBits, LifetimeSeconds: secs(t.Lifetime), RemainingSeconds: secs(t.Expires.Sub(s.Now)), ExpiresAt: jsonTime(t.Expires),
			Replay: replayJSON(t.Replay, t.ReplayWindow), ACL: t.ACLName}
		for _, d := range t.BypassBefore {
			tv.ACLEntries = append(tv.ACLEntries, selectorJSON("deny", d))
		}
		tv.ACLEntries = append(tv.ACLEntries, selectorJSON("permit", t.Selector))
		for _, d := range t.BypassAfter {
			tv.ACLEntries = append(tv.ACLEntries, selectorJSON("deny", d))
		}
		v.TEKs = append(v.TEKs, tv)
	}
	return v
}

// GDOIView is `show crypto gdoi | json`.
func GDOIView(s node.Snapshot) GDOIJSON {
	v := GDOIJSON{Header: NewHeader("show crypto gdoi", s.Now)}
	for _, g := range s.KS {
		v.KSGroups = append(v.KSGroups, ksGroupJSON(s, g))
	}
	v.GMGroups = gmGroupsJSON(s)
	return v
}

// ---- show crypto gdoi ks members

// KSMembersJSON is `show crypto gdoi ks members | json`.
type KSMembersJSON struct {
	Header
	Groups []KSMembersGroupJSON `json:"groups,omitempty"`
}

// KSMembersGroupJSON is one KS group and its members.
type KSMembersGroupJSON struct {
	Name           string         `json:"name"`
	Identity       uint32         `json:"identity"`
	RekeyTransport string         `json:"rekey_transport"`
	RekeysSent     int            `json:"rekeys_sent"`
	Members        []KSMemberJSON `json:"members,omitempty"`
}

// KSMemberJSON is one registered group member as the KS knows it.
// rekeys_sent and rekey_retries are per member only with unicast rekeys.
type KSMemberJSON struct {
	Address                    string   `json:"address"`
	Port                       uint16   `json:"port,omitempty"`
	Identity                   string   `json:"identity,omitempty"`
	Version                    string   `json:"version,omitempty"` // absent: unknown (no groupvpn Vendor ID)
	RegisteredAt               string   `json:"registered_at,omitempty"`
	LastRegistrationAt         string   `json:"last_registration_at,omitempty"`
	Registrations              int      `json:"registrations"`
	SenderIDs                  []uint32 `json:"sender_ids,omitempty"`
	RekeysSent                 *int     `json:"rekeys_sent,omitempty"`
	RekeyRetries               *int     `json:"rekey_retries,omitempty"`
	RekeyAcksReceived          int      `json:"rekey_acks_received"`
	RekeyAcksMissed            int      `json:"rekey_acks_missed"`
	RekeyAcksMissedConsecutive int      `json:"rekey_acks_missed_consecutive"`
	LastAckSequence            uint32   `json:"last_ack_sequence,omitempty"`
	Removed                    bool     `json:"removed"` // off the rekey list (no ACK for consecutive rekeys)
}

// KSMembersView is `show crypto gdoi ks members | json`.
func KSMembersView(s node.Snapshot) KSMembersJSON {
	v := KSMembersJSON{Header: NewHeader("show crypto gdoi ks members", s.Now)}
	for _, g := range s.KS {
		gv := KSMembersGroupJSON{Name: g.Name, Identity: g.ID, RekeyTransport: rekeyTransport(g.Unicast), RekeysSent: g.Rekeys}
		for i := range g.Members {
			gv.Members = append(gv.Members, ksMemberJSON(g, &g.Members[i]))
		}
		v.Groups = append(v.Groups, gv)
	}
	return v
}

// ---- show crypto gdoi gm

// GMJSON is `show crypto gdoi gm | json`.
type GMJSON struct {
	Header
	Groups []GMGroupJSON `json:"groups,omitempty"`
}

// GMGroupJSON is one group this node is a member of.
type GMGroupJSON struct {
	Name                   string         `json:"name"`
	Identity               uint32         `json:"identity"`
	RegistrationState      string         `json:"registration_state"` // idle | phase1 | registering | registered
	KeyServer              string         `json:"key_server,omitempty"`
	KeyServerPort          uint16         `json:"key_server_port,omitempty"`
	KeyServers             []string       `json:"key_servers,omitempty"`
	LocalAddress           string         `json:"local_address,omitempty"`
	LocalPort              uint16         `json:"local_port,omitempty"`
	RegisteredAt           string         `json:"registered_at,omitempty"`
	ReregisterAt           string         `json:"reregister_at,omitempty"`
	ReregisterInSeconds    *int64         `json:"reregister_in_seconds,omitempty"`
	RegistrationsSucceeded int            `json:"registrations_succeeded"`
	RegistrationsAttempted int            `json:"registrations_attempted"`
	RegistrationFailures   int            `json:"registration_failures"` // consecutive
	LastError              string         `json:"last_error,omitempty"`
	LastRekeySequence      uint32         `json:"last_rekey_sequence"`
	RekeysReceived         int            `json:"rekeys_received"`
	RekeysDuplicate        int            `json:"rekeys_duplicate"`
	RekeysReplayed         int            `json:"rekeys_replayed"`
	RekeysRejected         int            `json:"rekeys_rejected"`
	RekeyAcksSent          int            `json:"rekey_acks_sent"`
	LastRekeyAt            string         `json:"last_rekey_at,omitempty"`
	ActiveTEKs             int            `json:"active_teks"`
	FailMode               string         `json:"fail_mode"` // fail-open | fail-close
	FailCloseBootstrap     bool           `json:"fail_close_bootstrap"`
	ACLFrom                string         `json:"acl_from,omitempty"`
	ACL                    []ACLEntryJSON `json:"acl,omitempty"`
	KEK                    *GMKEKJSON     `json:"kek,omitempty"`
	TEKs                   []GMTEKJSON    `json:"teks,omitempty"`
}

// GMKEKJSON is the KEK a member holds (its key is never shown).
type GMKEKJSON struct {
	SPI                string `json:"spi,omitempty"`
	RekeyTransport     string `json:"rekey_transport"` // unicast | multicast
	MulticastGroup     string `json:"multicast_group,omitempty"`
	MulticastPort      uint16 `json:"multicast_port,omitempty"`
	Algorithm          string `json:"algorithm"`
	KeyBits            int    `json:"key_bits"`
	SignatureAlgorithm string `json:"signature_algorithm,omitempty"`
	AckRequested       bool   `json:"ack_requested"`
	InstalledAt        string `json:"installed_at,omitempty"`
	ExpiresAt          string `json:"expires_at,omitempty"`
	RemainingSeconds   int64  `json:"remaining_seconds"`
}

// GMTEKJSON is a TEK a member holds (its keys are never shown).
type GMTEKJSON struct {
	SPI                       string       `json:"spi"`
	Protocol                  string       `json:"protocol"` // esp | ah
	Transforms                []string     `json:"transforms"`
	KeyBits                   int          `json:"key_bits"`
	Selector                  ACLEntryJSON `json:"selector"`
	Direction                 string       `json:"direction"` // both | receive-only
	InstalledAt               string       `json:"installed_at,omitempty"`
	ExpiresAt                 string       `json:"expires_at,omitempty"`
	LifetimeSeconds           int64        `json:"lifetime_seconds"`
	ConfiguredLifetimeSeconds int64        `json:"configured_lifetime_seconds,omitempty"`
	RemainingSeconds          int64        `json:"remaining_seconds"`
	SendFromAt                string       `json:"send_from_at,omitempty"`
	DeactivateAt              string       `json:"deactivate_at,omitempty"`
	Replay                    ReplayJSON   `json:"replay"`
	PseudotimeSeconds         *float64     `json:"pseudotime_seconds,omitempty"` // time-based replay only
	SenderIDs                 []uint32     `json:"sender_ids,omitempty"`
	SenderIDBits              int          `json:"sender_id_bits,omitempty"`
}

func gmTEKJSON(s node.Snapshot, t sadb.TEK) GMTEKJSON {
	v := GMTEKJSON{SPI: spiHex(t.SPI), Protocol: tekProtoName(t.Protocol), Transforms: transformList(t.Transform, t.AuthAlg), KeyBits: t.KeyBits,
		Selector:  ACLEntryJSON{Action: "permit", Protocol: protoName(t.IPProto), Src: prefixString(t.Src), Dst: prefixString(t.Dst), SrcPort: t.SrcPort, DstPort: t.DstPort},
		Direction: "both", InstalledAt: jsonTime(t.Installed), ExpiresAt: jsonTime(t.Expires), LifetimeSeconds: secs(t.Lifetime),
		RemainingSeconds: secs(t.Expires.Sub(s.Now)), SendFromAt: jsonTime(t.SendFrom), DeactivateAt: jsonTime(t.Deactivate),
		Replay: replayJSON(t.ReplayMethod, t.ReplayWindow), SenderIDs: t.SenderIDs, SenderIDBits: t.SIDBits}
	if t.Configured != 0 {
		v.ConfiguredLifetimeSeconds = secs(t.Configured)
	}
	if t.ReceiveOnly {
		v.Direction = "receive-only"
	}
	if t.ReplayMethod == isakmp.ReplayTime {
		p := t.PseudotimeNow(s.Now).Seconds()
		v.PseudotimeSeconds = &p
	}
	return v
}

func gmGroupsJSON(s node.Snapshot) []GMGroupJSON {
	var out []GMGroupJSON
	for _, m := range s.GM {
		v := GMGroupJSON{Name: m.Group, Identity: m.ID, RegistrationState: regStateName(m.State),
			RegisteredAt: jsonTime(m.RegisteredAt), RegistrationsSucceeded: m.Registrations, RegistrationsAttempted: m.Registrations + m.Failures,
			RegistrationFailures: m.Failures, LastError: m.LastError, LastRekeySequence: m.Seq,
			RekeysReceived: m.Rekeys.Received, RekeysDuplicate: m.Rekeys.Duplicate, RekeysReplayed: m.Rekeys.Replayed,
			RekeysRejected: m.Rekeys.Rejected, RekeyAcksSent: m.Rekeys.AcksSent, LastRekeyAt: jsonTime(m.Rekeys.LastRekey),
			FailMode: failModeName(s.FailModes[m.Group]), FailCloseBootstrap: m.FailCloseBootstrap, ACLFrom: addrString(m.ACLFrom)}
		if m.KS.IsValid() {
			v.KeyServer, v.KeyServerPort = m.KS.Addr().String(), m.KS.Port()
			for _, a := range s.Addrs {
				if a.Addr().Is4() == m.KS.Addr().Is4() {
					v.LocalAddress, v.LocalPort = a.Addr().String(), a.Port()
					break
				}
			}
		}
		for _, a := range m.Servers {
			v.KeyServers = append(v.KeyServers, a.Addr().String())
		}
		if m.State == "registered" && !m.Reregister.IsZero() {
			v.ReregisterAt = jsonTime(m.Reregister)
			v.ReregisterInSeconds = optSecs(m.Reregister.Sub(s.Now))
		}
		for _, e := range m.ACL {
			a := ACLEntryJSON{Action: e.Action.String(), Protocol: protoName(e.IPProto), Src: prefixString(e.Src), Dst: prefixString(e.Dst),
				SrcPort: e.SrcPort, DstPort: e.DstPort}
			if e.Action == sadb.Protect && e.SPI != 0 {
				a.SPI = spiHex(e.SPI)
			}
			v.ACL = append(v.ACL, a)
		}
		for _, k := range s.KEKs {
			if k.Group != m.Group {
				continue
			}
			kv := &GMKEKJSON{SPI: bytesHex(k.SPI[:]), RekeyTransport: "unicast", Algorithm: kekAlgName(k.Alg), KeyBits: k.KeyBits,
				SignatureAlgorithm: sigAlgName(k.SigAlg), AckRequested: k.Ack, InstalledAt: jsonTime(k.Installed),
				ExpiresAt: jsonTime(k.Expires), RemainingSeconds: secs(k.Expires.Sub(s.Now))}
			if k.Multicast.IsValid() {
				kv.RekeyTransport, kv.MulticastGroup, kv.MulticastPort = "multicast", k.Multicast.Addr().String(), k.Multicast.Port()
			}
			v.KEK = kv
			break
		}
		for _, t := range s.TEKs {
			if t.Group != m.Group {
				continue
			}
			if s.Now.Before(t.Expires) {
				v.ActiveTEKs++
			}
			v.TEKs = append(v.TEKs, gmTEKJSON(s, t))
		}
		out = append(out, v)
	}
	return out
}

// GMView is `show crypto gdoi gm | json`.
func GMView(s node.Snapshot) GMJSON {
	return GMJSON{Header: NewHeader("show crypto gdoi gm", s.Now), Groups: gmGroupsJSON(s)}
}

// ---- show crypto ipsec sa

// IPsecSAsJSON is `show crypto ipsec sa | json`.
type IPsecSAsJSON struct {
	Header
	SADatabase      string         `json:"sa_database,omitempty"`       // where the SAs live ("" : in isakmpd)
	SADatabaseError string         `json:"sa_database_error,omitempty"` // tmd unreachable: isakmpd's copy shown
	CountersError   string         `json:"counters_error,omitempty"`    // the counters could not be read
	DataPlane       *DataPlaneJSON `json:"data_plane,omitempty"`
	SAs             []IPsecSAJSON  `json:"sas,omitempty"`
}

// DataPlaneJSON is the engine tmd runs: its device and counters by name.
type DataPlaneJSON struct {
	Device   string            `json:"device,omitempty"`
	Counters map[string]uint64 `json:"counters,omitempty"`
}

// IPsecSAJSON is one group SA (inbound and outbound alike).
type IPsecSAJSON struct {
	Group        string `json:"group"`
	Interface    string `json:"interface,omitempty"`
	CryptoMap    string `json:"crypto_map,omitempty"`
	LocalAddress string `json:"local_address,omitempty"`
	GMTEKJSON
	Counters *SACountersJSON `json:"counters,omitempty"` // absent: tmd reported none
}

// SACountersJSON are one SA's data-plane counters.
type SACountersJSON struct {
	EncapsPackets uint64 `json:"encaps_packets"`
	EncapsBytes   uint64 `json:"encaps_bytes"`
	DecapsPackets uint64 `json:"decaps_packets"`
	DecapsBytes   uint64 `json:"decaps_bytes"`
	ReplayDrops   uint64 `json:"replay_drops"`
	AuthFailures  uint64 `json:"auth_failures"`
	TBARDrops     uint64 `json:"tbar_drops"`
}

func saCountersJSON(c tmd.SACounters) *SACountersJSON {
	return &SACountersJSON{EncapsPackets: c.EncapsPackets, EncapsBytes: c.EncapsBytes, DecapsPackets: c.DecapsPackets,
		DecapsBytes: c.DecapsBytes, ReplayDrops: c.ReplayDrops, AuthFailures: c.AuthFailures, TBARDrops: c.TBARDrops}
}

func countersByKey(c *IPsecCounters) map[string]tmd.SACounters {
	out := map[string]tmd.SACounters{}
	if c != nil {
		for _, k := range c.SAs {
			out[fmt.Sprintf("%s/%d", k.Group, k.SPI)] = k.SACounters
		}
	}
	return out
}

// IPsecSAView is `show crypto ipsec sa | json`.
func IPsecSAView(s node.Snapshot, c *IPsecCounters, maps map[string]CryptoMapRef) IPsecSAsJSON {
	v := IPsecSAsJSON{Header: NewHeader("show crypto ipsec sa", s.Now), SADatabase: s.SADB, SADatabaseError: s.SADBErr}
	device := ""
	if c != nil {
		v.CountersError = c.Err
		if dp := c.DataPlane; dp != nil {
			device = dp.Device
			v.DataPlane = &DataPlaneJSON{Device: dp.Device}
			for _, k := range dp.Counters {
				if v.DataPlane.Counters == nil {
					v.DataPlane.Counters = map[string]uint64{}
				}
				v.DataPlane.Counters[k.Name] = k.Value
			}
			if dp.Device == "" && v.DataPlane.Counters == nil {
				v.DataPlane = nil
			}
		}
	}
	byKey := countersByKey(c)
	for _, t := range s.TEKs {
		ref := maps[t.Group]
		sa := IPsecSAJSON{Group: t.Group, Interface: ref.Interface, CryptoMap: ref.Map, GMTEKJSON: gmTEKJSON(s, t)}
		if device != "" {
			sa.Interface = device
		}
		if a := localAddr(s, t.Group); a != "0.0.0.0" {
			sa.LocalAddress = a
		}
		if k, ok := byKey[fmt.Sprintf("%s/%d", t.Group, t.SPI)]; ok {
			sa.Counters = saCountersJSON(k)
		}
		v.SAs = append(v.SAs, sa)
	}
	return v
}

// ---- show crypto isakmp sa

// ISAKMPSAsJSON is `show crypto isakmp sa | json`.
type ISAKMPSAsJSON struct {
	Header
	SAs []ISAKMPSAJSON `json:"sas,omitempty"`
}

// ISAKMPSAJSON is one phase-1 SA.
type ISAKMPSAJSON struct {
	ConnID           int    `json:"conn_id"`
	LocalAddress     string `json:"local_address"`
	LocalPort        uint16 `json:"local_port"`
	PeerAddress      string `json:"peer_address"`
	PeerPort         uint16 `json:"peer_port"`
	Role             string `json:"role"`  // initiator | responder
	State            string `json:"state"` // gdoi_idle (established)
	InitiatorCookie  string `json:"initiator_cookie"`
	ResponderCookie  string `json:"responder_cookie"`
	Encryption       string `json:"encryption"` // aes (CBC)
	KeyBits          int    `json:"key_bits"`
	Hash             string `json:"hash"`
	DHGroup          uint16 `json:"dh_group"`
	Authentication   string `json:"authentication"`
	PeerIdentity     string `json:"peer_identity,omitempty"`
	PeerVersion      string `json:"peer_version,omitempty"` // absent: no groupvpn Vendor ID
	PeerDPD          bool   `json:"peer_dpd"`
	EstablishedAt    string `json:"established_at,omitempty"`
	ExpiresAt        string `json:"expires_at,omitempty"`
	RemainingSeconds int64  `json:"remaining_seconds"`
	// DPD is absent when this SA sends no R-U-THERE on a timer.
	DPD *DPDJSON `json:"dpd,omitempty"`
}

// DPDJSON is an SA's dead peer detection (crypto isakmp keepalive).
type DPDJSON struct {
	Mode               string `json:"mode"` // on-demand | periodic
	IntervalSeconds    int64  `json:"interval_seconds"`
	RetrySeconds       int64  `json:"retry_seconds"`
	Tries              int    `json:"tries"`                 // unanswered R-U-THEREs that declare the peer dead
	RUThereOutstanding int    `json:"r_u_there_outstanding"` // of the probe in progress
	NextAt             string `json:"next_at,omitempty"`     // the next R-U-THERE or verdict
	LastAliveAt        string `json:"last_alive_at,omitempty"`
}

func dpdJSON(d ike.DPDState) *DPDJSON {
	if d.Next.IsZero() || !d.Timer.Enabled() {
		return nil
	}
	retry, tries := d.Timer.Retry, d.Timer.Tries
	if retry <= 0 {
		retry = ike.DefaultDPDRetry
	}
	if tries <= 0 {
		tries = ike.DefaultDPDTries
	}
	return &DPDJSON{Mode: d.Timer.Mode(), IntervalSeconds: secs(d.Timer.Interval), RetrySeconds: secs(retry), Tries: tries,
		RUThereOutstanding: d.Outstanding, NextAt: jsonTime(d.Next), LastAliveAt: jsonTime(d.LastAlive)}
}

func isakmpSAJSON(s node.Snapshot, i int, p ike.Info) ISAKMPSAJSON {
	v := ISAKMPSAJSON{ConnID: i + 1, LocalAddress: p.Local.Addr().String(), LocalPort: p.Local.Port(),
		PeerAddress: p.Peer.Addr().String(), PeerPort: p.Peer.Port(), Role: "responder", State: "gdoi_idle",
		InitiatorCookie: "0x" + hex.EncodeToString(p.ICookie[:]), ResponderCookie: "0x" + hex.EncodeToString(p.RCookie[:]),
		Encryption: "aes", KeyBits: p.Suite.KeyBits, Hash: p.Suite.Hash.String(), DHGroup: p.Suite.Group,
		Authentication: p.Suite.Auth.String(), PeerVersion: versionString(p.PeerVersion), PeerDPD: p.PeerDPD,
		EstablishedAt: jsonTime(p.EstablishedAt), ExpiresAt: jsonTime(p.Expires), RemainingSeconds: secs(p.Expires.Sub(s.Now)),
		DPD: dpdJSON(p.DPD)}
	if p.Initiator {
		v.Role = "initiator"
	}
	if p.PeerID != nil {
		v.PeerIdentity = p.PeerID.String()
	}
	return v
}

// ISAKMPSAView is `show crypto isakmp sa | json`.
func ISAKMPSAView(s node.Snapshot) ISAKMPSAsJSON { return isakmpSAView("show crypto isakmp sa", s) }

// ISAKMPSADetailView is `show crypto isakmp sa detail | json`: the same.
func ISAKMPSADetailView(s node.Snapshot) ISAKMPSAsJSON {
	return isakmpSAView("show crypto isakmp sa detail", s)
}

func isakmpSAView(command string, s node.Snapshot) ISAKMPSAsJSON {
	v := ISAKMPSAsJSON{Header: NewHeader(command, s.Now)}
	for i, p := range s.Phase1 {
		v.SAs = append(v.SAs, isakmpSAJSON(s, i, p))
	}
	return v
}

// ---- show crypto isakmp listen

// ListenJSON is `show crypto isakmp listen | json`.
type ListenJSON struct {
	Header
	Addresses []AddrPortJSON `json:"addresses,omitempty"`
}

// AddrPortJSON is an address and a port.
type AddrPortJSON struct {
	Address string `json:"address"`
	Port    uint16 `json:"port"`
}

// ListenView is `show crypto isakmp listen | json`.
func ListenView(s node.Snapshot) ListenJSON {
	v := ListenJSON{Header: NewHeader("show crypto isakmp listen", s.Now)}
	for _, a := range s.Addrs {
		v.Addresses = append(v.Addresses, AddrPortJSON{Address: a.Addr().String(), Port: a.Port()})
	}
	return v
}

// ---- show crypto gdoi ks replay, show crypto gdoi gm replay

// ReplayGroupsJSON is `show crypto gdoi ks replay | json` and `show crypto
// gdoi gm replay | json`.
type ReplayGroupsJSON struct {
	Header
	Groups []ReplayGroupJSON `json:"groups,omitempty"`
}

// ReplayGroupJSON is one group's anti-replay state.
type ReplayGroupJSON struct {
	Name string `json:"name"`
	// KS only, with a time-based TEK: the KS's pseudotime now and the
	// next resynchronisation rekey.
	PseudotimeSeconds      *float64        `json:"pseudotime_seconds,omitempty"`
	NextTBARResyncAt       string          `json:"next_tbar_resync_at,omitempty"`
	NextTBARResyncInSecond *int64          `json:"next_tbar_resync_in_seconds,omitempty"`
	TEKs                   []ReplayTEKJSON `json:"teks,omitempty"`
}

// ReplayTEKJSON is one TEK's anti-replay: number is the KS's IPSec SA
// Number; pseudotime_seconds (GM, time-based) the GM's pseudotime now;
// counters the data plane's (GM, when tmd reported them).
type ReplayTEKJSON struct {
	Number            int             `json:"number,omitempty"`
	SPI               string          `json:"spi"`
	Replay            ReplayJSON      `json:"replay"`
	PseudotimeSeconds *float64        `json:"pseudotime_seconds,omitempty"`
	Counters          *SACountersJSON `json:"counters,omitempty"`
}

// KSReplayView is `show crypto gdoi ks replay | json`.
func KSReplayView(s node.Snapshot) ReplayGroupsJSON {
	v := ReplayGroupsJSON{Header: NewHeader("show crypto gdoi ks replay", s.Now)}
	for _, g := range s.KS {
		gv := ReplayGroupJSON{Name: g.Name}
		for i, t := range g.TEKs {
			if t.Replay == isakmp.ReplayTime && gv.PseudotimeSeconds == nil {
				p := g.Pseudotime.Seconds()
				gv.PseudotimeSeconds = &p
				gv.NextTBARResyncAt = jsonTime(g.NextResync)
				gv.NextTBARResyncInSecond = optSecs(g.NextResync.Sub(s.Now))
			}
			gv.TEKs = append(gv.TEKs, ReplayTEKJSON{Number: i + 1, SPI: spiHex(t.SPI), Replay: replayJSON(t.Replay, t.ReplayWindow)})
		}
		v.Groups = append(v.Groups, gv)
	}
	return v
}

// GMReplayView is `show crypto gdoi gm replay | json`.
func GMReplayView(s node.Snapshot, c *IPsecCounters) ReplayGroupsJSON {
	v := ReplayGroupsJSON{Header: NewHeader("show crypto gdoi gm replay", s.Now)}
	byKey := countersByKey(c)
	for _, m := range s.GM {
		gv := ReplayGroupJSON{Name: m.Group}
		for _, t := range s.TEKs {
			if t.Group != m.Group {
				continue
			}
			tv := ReplayTEKJSON{SPI: spiHex(t.SPI), Replay: replayJSON(t.ReplayMethod, t.ReplayWindow)}
			if t.ReplayMethod == isakmp.ReplayTime {
				p := t.PseudotimeNow(s.Now).Seconds()
				tv.PseudotimeSeconds = &p
				if k, ok := byKey[fmt.Sprintf("%s/%d", t.Group, t.SPI)]; ok {
					tv.Counters = saCountersJSON(k)
				}
			}
			gv.TEKs = append(gv.TEKs, tv)
		}
		v.Groups = append(v.Groups, gv)
	}
	return v
}

// ---- counters: show crypto isakmp statistics, gm counters, ks counters

// CountersJSON is `show crypto isakmp statistics | json`, `show crypto
// gdoi gm counters | json` and `show crypto gdoi ks counters | json`:
// counter sections by key, each counter by its stable snake_case name.
type CountersJSON struct {
	Header
	Counters map[string]map[string]uint64 `json:"counters,omitempty"`
	// Unavailable says, by section key, why a section could not be read.
	Unavailable map[string]string  `json:"unavailable,omitempty"`
	Groups      []CounterGroupJSON `json:"groups,omitempty"`
}

// CounterGroupJSON is one group's counters (gm counters: the rekey ones;
// ks counters: rekeys_sent and member_count).
type CounterGroupJSON struct {
	Name            string `json:"name"`
	Registrations   *int   `json:"registrations,omitempty"`
	RekeysReceived  *int   `json:"rekeys_received,omitempty"`
	RekeysDuplicate *int   `json:"rekeys_duplicate,omitempty"`
	RekeysReplayed  *int   `json:"rekeys_replayed,omitempty"`
	RekeysRejected  *int   `json:"rekeys_rejected,omitempty"`
	RekeyAcksSent   *int   `json:"rekey_acks_sent,omitempty"`
	RekeysSent      *int   `json:"rekeys_sent,omitempty"`
	MemberCount     *int   `json:"member_count,omitempty"`
}

func counterMap(cs []ike.Counter) map[string]uint64 {
	out := map[string]uint64{}
	for _, c := range cs {
		out[c.Name] = c.Value
	}
	return out
}

func intp(v int) *int { return &v }

// addSection puts a section's counters under key; a section without
// counters is absent.
func (v *CountersJSON) addSection(key string, cs []ike.Counter) {
	if len(cs) == 0 {
		return
	}
	if v.Counters == nil {
		v.Counters = map[string]map[string]uint64{}
	}
	v.Counters[key] = counterMap(cs)
}

// StatisticsView is `show crypto isakmp statistics | json`.
func StatisticsView(s node.Snapshot, sections []Section) CountersJSON {
	v := CountersJSON{Header: NewHeader("show crypto isakmp statistics", s.Now)}
	v.addSection("isakmp", s.ISAKMPCounters)
	for _, sec := range sections {
		if sec.Err != "" {
			if v.Unavailable == nil {
				v.Unavailable = map[string]string{}
			}
			v.Unavailable[sec.Key] = sec.Err
			continue
		}
		v.addSection(sec.Key, sec.Counters)
	}
	return v
}

// GMCountersView is `show crypto gdoi gm counters | json`.
func GMCountersView(s node.Snapshot) CountersJSON {
	v := CountersJSON{Header: NewHeader("show crypto gdoi gm counters", s.Now)}
	v.addSection("gm", s.GMCounters)
	for _, m := range s.GM {
		v.Groups = append(v.Groups, CounterGroupJSON{Name: m.Group, Registrations: intp(m.Registrations),
			RekeysReceived: intp(m.Rekeys.Received), RekeysDuplicate: intp(m.Rekeys.Duplicate), RekeysReplayed: intp(m.Rekeys.Replayed),
			RekeysRejected: intp(m.Rekeys.Rejected), RekeyAcksSent: intp(m.Rekeys.AcksSent)})
	}
	return v
}

// KSCountersView is `show crypto gdoi ks counters | json`.
func KSCountersView(s node.Snapshot) CountersJSON {
	v := CountersJSON{Header: NewHeader("show crypto gdoi ks counters", s.Now)}
	v.addSection("ks", s.KSCounters)
	for _, g := range s.KS {
		v.Groups = append(v.Groups, CounterGroupJSON{Name: g.Name, RekeysSent: intp(g.Rekeys), MemberCount: intp(memberCount(g))})
	}
	return v
}

// ---- show crypto gdoi ks coop

// COOPJSON is `show crypto gdoi ks coop | json`.
type COOPJSON struct {
	Header
	Groups []COOPGroupJSON `json:"groups,omitempty"`
}

// COOPGroupJSON is one group's cooperative key server state.
type COOPGroupJSON struct {
	Name               string            `json:"name"`
	LocalAddress       string            `json:"local_address,omitempty"`
	LocalPriority      int               `json:"local_priority"`
	Role               string            `json:"role"`   // primary | secondary | electing
	Status             string            `json:"status"` // alive
	Version            string            `json:"version,omitempty"`
	Primary            string            `json:"primary,omitempty"` // the primary followed (absent: none, in election)
	AnnouncePeriodSecs int64             `json:"announce_period_seconds"`
	DeadIntervalSecs   int64             `json:"dead_interval_seconds"`
	ElectionWaitSecs   int64             `json:"election_wait_seconds"`
	MembersGeneration  uint64            `json:"members_generation"`
	LastSyncAt         string            `json:"last_sync_at,omitempty"`
	Counters           map[string]uint64 `json:"counters"`
	Peers              []COOPPeerJSON    `json:"peers,omitempty"`
}

// COOPPeerJSON is one configured peer KS as last heard.
type COOPPeerJSON struct {
	Address     string `json:"address"`
	Status      string `json:"status"`             // alive | dead
	Role        string `json:"role,omitempty"`     // absent: never heard
	Priority    int    `json:"priority,omitempty"` // absent: never heard
	Version     string `json:"version,omitempty"`  // absent: never heard
	Sequence    uint32 `json:"sequence"`           // the last announcement sequence number accepted
	LastHeardAt string `json:"last_heard_at,omitempty"`
}

// COOPView is `show crypto gdoi ks coop | json`.
func COOPView(s node.Snapshot) COOPJSON {
	v := COOPJSON{Header: NewHeader("show crypto gdoi ks coop", s.Now)}
	for _, name := range coopGroups(s) {
		st := s.COOP[name]
		g := COOPGroupJSON{Name: name, LocalAddress: addrString(st.Local), LocalPriority: int(st.Priority), Role: roleKey(st.Role), Status: "alive",
			Version: versionString(st.Version), Primary: addrString(st.Primary), AnnouncePeriodSecs: secs(st.Period),
			DeadIntervalSecs: secs(st.Dead), ElectionWaitSecs: secs(st.ElectionWait), MembersGeneration: st.MembersGen,
			LastSyncAt: jsonTime(st.LastSync), Counters: map[string]uint64{}}
		for _, c := range coopCounters(st.Stats) {
			g.Counters[c.key] = c.value
		}
		for _, p := range st.Peers {
			status := "dead"
			if p.Reachable {
				status = "alive"
			}
			g.Peers = append(g.Peers, COOPPeerJSON{Address: addrString(p.Addr), Status: status, Role: roleKey(p.Role), Priority: int(p.Priority),
				Version: versionString(p.Version), Sequence: p.Seq, LastHeardAt: jsonTime(p.LastHeard)})
		}
		v.Groups = append(v.Groups, g)
	}
	return v
}

// ---- show crypto gdoi feature gm-removal | policy-replace

// FeaturesJSON is `show crypto gdoi feature FEATURE | json`.
type FeaturesJSON struct {
	Header
	Feature string             `json:"feature"` // gm-removal | policy-replace
	Groups  []FeatureGroupJSON `json:"groups,omitempty"`
}

// FeatureGroupJSON is one group's table.
type FeatureGroupJSON struct {
	Name       string           `json:"name"`
	KeyServers []FeatureRowJSON `json:"key_servers,omitempty"`
	Members    []FeatureRowJSON `json:"members,omitempty"`
}

// FeatureRowJSON is one device: its address, version (absent: unknown)
// and whether it supports the feature.
type FeatureRowJSON struct {
	Address   string `json:"address"`
	Version   string `json:"version,omitempty"`
	Supported bool   `json:"supported"`
}

// FeaturesView is `show crypto gdoi feature FEATURE | json`.
func FeaturesView(feature string, now time.Time, tables []FeatureTable) FeaturesJSON {
	v := FeaturesJSON{Header: NewHeader("show crypto gdoi feature "+feature, now), Feature: feature}
	tables = sortedKeyServers(tables)
	rows := func(rs []ks.FeatureRow) []FeatureRowJSON {
		var out []FeatureRowJSON
		for _, r := range rs {
			out = append(out, FeatureRowJSON{Address: addrString(r.ID), Version: versionString(r.Version), Supported: r.Supported})
		}
		return out
	}
	for _, t := range tables {
		v.Groups = append(v.Groups, FeatureGroupJSON{Name: t.Group, KeyServers: rows(t.KeyServers), Members: rows(t.Members)})
	}
	return v
}

// ---- show version, show clock, show running-config

// VersionJSON is `show version | json`.
type VersionJSON struct {
	Header
	Version       string `json:"version"`
	Hostname      string `json:"hostname"`
	UptimeSeconds int64  `json:"uptime_seconds"`
	StartedAt     string `json:"started_at,omitempty"`
	OS            string `json:"os,omitempty"`
	Arch          string `json:"arch,omitempty"`
	GoVersion     string `json:"go_version,omitempty"`
}

// Build is what `show version` says of the running program.
type Build struct {
	Started             time.Time
	OS, Arch, GoVersion string
}

// VersionView is `show version | json`.
func VersionView(s node.Snapshot, b Build) VersionJSON {
	host := s.Hostname
	if host == "" {
		host = "groupvpn"
	}
	v := VersionJSON{Header: NewHeader("show version", s.Now), Version: s.Version.String(), Hostname: host,
		StartedAt: jsonTime(b.Started), OS: b.OS, Arch: b.Arch, GoVersion: b.GoVersion}
	if !b.Started.IsZero() {
		v.UptimeSeconds = secs(s.Now.Sub(b.Started))
	}
	return v
}

// ClockJSON is `show clock | json`: the clock with milliseconds.
type ClockJSON struct {
	Header
	Clock string `json:"clock"`
}

// ClockView is `show clock | json`.
func ClockView(now time.Time) ClockJSON {
	return ClockJSON{Header: NewHeader("show clock", now), Clock: now.UTC().Format("2006-01-02T15:04:05.000Z07:00")}
}

// RunningConfigJSON is `show running-config | json`.
type RunningConfigJSON struct {
	Header
	Config string `json:"config"` // the configuration in force, as `show running-config` prints it
}

// RunningConfigView is `show running-config | json`.
func RunningConfigView(now time.Time, text string) RunningConfigJSON {
	return RunningConfigJSON{Header: NewHeader("show running-config", now), Config: text}
}

// ---- show logging

// LoggingJSON is `show logging | json`.
type LoggingJSON struct {
	Header
	Buffer *LoggingBufferJSON `json:"buffer,omitempty"` // absent: logging buffered is off
	Trap   *LoggingTrapJSON   `json:"trap,omitempty"`   // absent: the daemon has no syslog sinks
}

// LoggingBufferJSON is logging buffered and its lines, oldest first.
type LoggingBufferJSON struct {
	Level     string   `json:"level"`
	SizeBytes int      `json:"size_bytes"`
	Lines     []string `json:"lines,omitempty"`
}

// LoggingTrapJSON is what goes to the logging hosts.
type LoggingTrapJSON struct {
	Level       string   `json:"level"`
	Facility    string   `json:"facility"`
	Hosts       []string `json:"hosts,omitempty"`
	LinesLogged uint64   `json:"lines_logged"`
	HostDrops   uint64   `json:"host_drops"`
}

// Logging is the state `show logging` shows (syslog.Sinks'); Sinks false
// for a daemon without them (tests, the lab).
type Logging struct {
	Sinks           bool
	BufferSize      int // 0: logging buffered is off
	BufferLevel     int
	Lines           []string
	Trap            int
	Facility        string
	Hosts           []string
	Sent, HostDrops uint64
}

// LoggingView is `show logging | json`.
func LoggingView(now time.Time, l Logging) LoggingJSON {
	v := LoggingJSON{Header: NewHeader("show logging", now)}
	if !l.Sinks {
		return v
	}
	if l.BufferSize > 0 {
		v.Buffer = &LoggingBufferJSON{Level: severityName(l.BufferLevel), SizeBytes: l.BufferSize, Lines: l.Lines}
	}
	v.Trap = &LoggingTrapJSON{Level: severityName(l.Trap), Facility: l.Facility, LinesLogged: l.Sent, HostDrops: l.HostDrops}
	for _, h := range l.Hosts {
		v.Trap.Hosts = append(v.Trap.Hosts, strings.TrimPrefix(h, "udp://"))
	}
	return v
}

func severityName(l int) string {
	if l >= 0 && l < len(policy.Severities) {
		return policy.Severities[l]
	}
	return fmt.Sprint(l)
}

// ---- show crypto gdoi ks policy

// KSPolicyJSON is `show crypto gdoi ks policy | json`.
type KSPolicyJSON struct {
	Header
	Groups         []KSPolicyGroupJSON `json:"groups,omitempty"`
	PendingChanges []PolicyChangeJSON  `json:"pending_changes,omitempty"` // committed, not yet sent to the GMs
}

// KSPolicyGroupJSON is one KS group's running policy.
type KSPolicyGroupJSON struct {
	Name     string            `json:"name"`
	Identity uint32            `json:"identity"`
	KEK      KSPolicyKEKJSON   `json:"kek"`
	TEKs     []KSPolicyTEKJSON `json:"teks,omitempty"`
}

// KSPolicyKEKJSON is the configured rekey SA: rekey_transport none means
// no rekeys (no rekey authentication: the GMs re-register).
type KSPolicyKEKJSON struct {
	Algorithm       string `json:"algorithm"`
	KeyBits         int    `json:"key_bits"`
	LifetimeSeconds int64  `json:"lifetime_seconds"`
	RekeyTransport  string `json:"rekey_transport"` // none | unicast | multicast
}

// KSPolicyTEKJSON is one sa ipsec N.
type KSPolicyTEKJSON struct {
	SA              int        `json:"sa"`
	Profile         string     `json:"profile,omitempty"`
	Transforms      []string   `json:"transforms,omitempty"`
	LifetimeSeconds int64      `json:"lifetime_seconds"`
	ACL             string     `json:"acl,omitempty"`
	Replay          ReplayJSON `json:"replay"`
}

// PolicyChangeJSON is one committed change the GMs have not received.
type PolicyChangeJSON struct {
	Group  string `json:"group"`
	Kind   string `json:"kind"`
	SA     int    `json:"sa,omitempty"` // sa ipsec N of a TEK change
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	Rekey  bool   `json:"rekey"` // the change needs a rekey to reach the GMs
	Effect string `json:"effect,omitempty"`
}

// changeKinds are the stable names of policy.ChangeKind.
var changeKinds = map[policy.ChangeKind]string{
	policy.TEKLifetime: "tek_lifetime", policy.TEKTransformSet: "tek_transform_set", policy.TEKProfile: "tek_profile",
	policy.TEKMatchACL: "tek_match_acl", policy.TEKReplayEnabled: "tek_replay_counter_enabled",
	policy.TEKReplayValue: "tek_replay_counter_value", policy.TEKReplayDisabled: "tek_replay_counter_disabled",
	policy.TEKTBAREnabled: "tek_tbar_enabled", policy.TEKTBARWindow: "tek_tbar_window", policy.TEKTBARDisabled: "tek_tbar_disabled",
	policy.TEKReceiveOnlyOn: "tek_receive_only_enabled", policy.TEKReceiveOnlyOff: "tek_receive_only_disabled",
	policy.TEKSAAdded: "tek_sa_added", policy.TEKSARemoved: "tek_sa_removed",
	policy.KEKLifetime: "kek_lifetime", policy.KEKAuthentication: "kek_authentication_key", policy.KEKCipher: "kek_cipher",
}

// changeKindName is k's stable name; a kind added to policy without one
// here gets its text in snake_case.
func changeKindName(k policy.ChangeKind) string {
	if n, ok := changeKinds[k]; ok {
		return n
	}
	var b strings.Builder
	us := false
	for _, r := range strings.ToLower(string(k)) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			us = false
		} else if !us && b.Len() > 0 {
			b.WriteByte('_')
			us = true
		}
	}
	return strings.TrimSuffix(b.String(), "_")
}

func policyReplay(m policy.ReplayMode, window int) ReplayJSON {
	switch m {
	case policy.ReplayTime:
		return replayJSON(isakmp.ReplayTime, window)
	case policy.ReplayNone:
		return replayJSON(isakmp.ReplayNone, 0)
	}
	return replayJSON(isakmp.ReplayCounter, window)
}

// KSPolicyView is `show crypto gdoi ks policy | json`: run's KS groups
// and the changes not yet sent.
func KSPolicyView(now time.Time, run *policy.Config, changes []policy.Change) KSPolicyJSON {
	v := KSPolicyJSON{Header: NewHeader("show crypto gdoi ks policy", now)}
	if run != nil {
		for _, g := range run.KSGroups() {
			s := g.Server
			gv := KSPolicyGroupJSON{Name: g.Name, Identity: g.Identity,
				KEK: KSPolicyKEKJSON{Algorithm: "aes", KeyBits: s.RekeyKeyBits, LifetimeSeconds: secs(s.RekeyLifetime), RekeyTransport: string(s.Mode())}}
			for _, sa := range s.SAs {
				tv := KSPolicyTEKJSON{SA: sa.Seq, Profile: sa.ProfileName, ACL: sa.MatchACLName, Replay: policyReplay(sa.Replay, sa.ReplayWindow)}
				if sa.Profile != nil {
					tv.LifetimeSeconds = secs(sa.Profile.Lifetime)
					if len(sa.Profile.TransformSets) > 0 {
						tv.Transforms = sa.Profile.TransformSets[0].Transforms()
					}
				}
				gv.TEKs = append(gv.TEKs, tv)
			}
			v.Groups = append(v.Groups, gv)
		}
	}
	for _, c := range changes {
		v.PendingChanges = append(v.PendingChanges, PolicyChangeJSON{Group: c.Group, Kind: changeKindName(c.Kind), SA: c.SA,
			From: c.From, To: c.To, Rekey: c.Rekey, Effect: c.Effect})
	}
	return v
}

// ---- show crypto key mypubkey {rsa | ec | all}

// KeysJSON is `show crypto key mypubkey {rsa | ec | all} | json`.
type KeysJSON struct {
	Header
	Keys []KeyJSON `json:"keys,omitempty"`
	// Problems are the key store's files that could not be read.
	Problems []string `json:"problems,omitempty"`
}

// KeyJSON is one key pair of the key store: its public half only.
type KeyJSON struct {
	Name        string `json:"name"`
	Type        string `json:"type"` // rsa | ec
	Bits        int    `json:"bits"` // RSA modulus or EC curve size
	Storage     string `json:"storage"`
	Usage       string `json:"usage"` // general-purpose (rsa) | signature (ec)
	StoredAt    string `json:"stored_at,omitempty"`
	PublicKey   string `json:"public_key"`         // DER SubjectPublicKeyInfo, plain lowercase hex
	Fingerprint string `json:"fingerprint_sha256"` // SHA-256 of that DER, plain lowercase hex
}

// KeyView is key as `| json` shows it, stored in the directory storage.
func KeyView(key *keystore.Key, storage string) KeyJSON {
	der, _ := keystore.PublicDER(key.Public())
	usage := "general-purpose"
	if key.Type == "ec" {
		usage = "signature"
	}
	return KeyJSON{Name: key.Label, Type: key.Type, Bits: key.Bits, Storage: storage, Usage: usage,
		StoredAt: jsonTime(key.Stored), PublicKey: hex.EncodeToString(der), Fingerprint: keystore.Fingerprint(key.Public())}
}

// KeysView is `show crypto key mypubkey TYPE | json` (typ rsa, ec, or ""
// for all) read at now.
func KeysView(typ string, now time.Time, keys []KeyJSON, problems []error) KeysJSON {
	if typ == "" {
		typ = "all"
	}
	v := KeysJSON{Header: NewHeader("show crypto key mypubkey "+typ, now), Keys: keys}
	for _, p := range problems {
		v.Problems = append(v.Problems, p.Error())
	}
	return v
}
