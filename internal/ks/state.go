package ks

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// Store keeps a key server's state across restarts (SPEC O4, T1);
// internal/store implements it on disk. Both writes are durable when they
// return: the delivery calls them before it sends what depends on them
// (write before send).
type Store interface {
	// LoadGroups returns every stored group (a restart).
	LoadGroups() ([]*GroupState, error)
	// SaveGroup writes one group's whole state, members included. It
	// never lowers the group's reserved sequence mark. A state marked
	// Delta (DeltaState) changes only the members it lists (Members
	// written, MembersGone deleted) and leaves the others as stored; a
	// store refuses one for a group it does not hold.
	SaveGroup(*GroupState) error
	// SaveKeys writes the group's state but its members, which stay as
	// last saved (a group never saved is saved whole): the write of a
	// registration's raised sender-ID mark before its answer is sent
	// (SIDReservationsUnwritten), whose cost does not grow with the
	// members. (A rekey writes its members too: Delivery.start.)
	SaveKeys(*GroupState) error
	// ReserveSeq durably raises the group's reserved sequence mark by n
	// and returns the numbers reserved, from..to.
	ReserveSeq(group string, n uint32) (from, to uint32, err error)
}

// GroupState is everything the KS must remember about one group.
type GroupState struct {
	Name        string
	ID          uint32
	SigningKey  []byte // rekey signing key, PKCS#8 DER; nil for a group without rekeys
	KEK         KEKState
	TEKs        []TEKState
	Seq         uint32 // last sequence number used
	SeqReserved uint32 // high-water mark reserved on disk (ReserveSeq)
	Members     []MemberState
	// Delta: Members are only the members changed since the group's
	// previous state handed out for the store (DeltaState), MembersGone
	// those no longer listed; every other member is as last written. A
	// writer that holds an unwritten delta merges a newer one into it,
	// never drops it (kswriter). False: Members are all of them.
	Delta       bool
	MembersGone []netip.Addr
	UpdatedAt   time.Time
	// PseudotimeStart is the zero of the group's TBAR pseudotime (the
	// first registration); zero: not started. A restarted KS goes on
	// with it, so that the GMs' time-based anti-replay windows stay in
	// step (SPEC T2, O4).
	PseudotimeStart time.Time
	// InFlight is the last rekey while some members it went to have not
	// acknowledged it; nil when none is (SPEC O4: a restarted KS sends
	// it again to them). Kept by the rekey delivery (Delivery).
	InFlight *PushState
}

// PushState is a unicast rekey still being delivered: its datagrams as
// sent and the members that have not acknowledged it.
type PushState struct {
	Seq        uint32           `json:"seq"`
	KEKSPI     [16]byte         `json:"kek_spi"`           // the KEK it is encrypted under
	KEKKey     []byte           `json:"kek_key,omitempty"` // (ACKs are checked with it)
	Data       []byte           `json:"data"`
	OldData    []byte           `json:"old_data,omitempty"` // for members before policy replace
	Removal    bool             `json:"removal,omitempty"`
	NewKEK     bool             `json:"new_kek,omitempty"`
	Pending    []netip.AddrPort `json:"pending"`
	PendingOld []netip.AddrPort `json:"pending_old,omitempty"` // get OldData
	Sent       time.Time        `json:"sent"`
}

// KEKState is a group's key encryption key.
type KEKState struct {
	SPI     [16]byte  `json:"spi"`
	Key     []byte    `json:"key,omitempty"` // IV | key
	KeyBits int       `json:"key_bits,omitempty"`
	Expires time.Time `json:"expires"`
}

// TEKState is one traffic encryption key with the traffic it protects.
type TEKState struct {
	SPI       uint32        `json:"spi"`
	Transform uint8         `json:"transform"`
	KeyBits   int           `json:"key_bits"`
	AuthAlg   uint16        `json:"auth_alg,omitempty"`
	EncKey    []byte        `json:"enc_key,omitempty"`
	AuthKey   []byte        `json:"auth_key,omitempty"`
	Proto     uint8         `json:"proto"`
	Src       netip.Prefix  `json:"src"`
	Dst       netip.Prefix  `json:"dst"`
	SrcPort   uint16        `json:"src_port,omitempty"`
	DstPort   uint16        `json:"dst_port,omitempty"`
	Created   time.Time     `json:"created"`
	Expires   time.Time     `json:"expires"`
	Lifetime  time.Duration `json:"lifetime"`
	SIDNext   uint32        `json:"sid_next"`
	// SIDBits is the width SIDNext counts in (0: MinSIDBits, a state
	// written before widths were chosen per group).
	SIDBits uint8 `json:"sid_bits,omitempty"`
	// SIDReserved is the key's sender-ID high-water mark at width
	// SIDBits: no ID at or above it was handed out under the key. A KS
	// writes it before an ID above the stored mark leaves it, and a
	// restarted KS goes on from it (0: a state written before marks were
	// kept). A store must never lower it (store.Store keeps the higher
	// of the stored and the written mark of a key, by SPI).
	SIDReserved uint32 `json:"sid_reserved,omitempty"`
	// SIDFloor, at width SIDBits, bounds the IDs members may hold from
	// the keys this one replaced (the highest of their marks and floors
	// when it was made): a restarted KS keeps every ID below it that no
	// stored member holds out of its hands, as below SIDReserved, since
	// a member the store lost may carry it into this key (a multicast
	// rekey reaches it). 0: none (a state written before floors were
	// kept, a group without rekeys, keys made by a GM removal).
	SIDFloor uint32 `json:"sid_floor,omitempty"`
}

// MemberState is one registered GM.
type MemberState struct {
	Address       netip.Addr `json:"address"`
	Identity      string     `json:"identity,omitempty"`
	Version       string     `json:"version,omitempty"`
	Registered    time.Time  `json:"registered"`
	LastRegister  time.Time  `json:"last_register"`
	Registrations int        `json:"registrations"`
	SenderIDs     []uint32   `json:"sender_ids,omitempty"`
	SIDBits       uint8      `json:"sid_bits,omitempty"` // their width (0: MinSIDBits)
	// PrevSenderIDs are the IDs the member held before its latest
	// registrations, which it may still use (it may never have got their
	// answers), oldest first: each the ID shifted left 8 bits, or'ed with
	// its width. A KS carries them into every new key as the member's.
	// (Absent from states written before they were kept.)
	PrevSenderIDs []uint32 `json:"prev_sender_ids,omitempty"`
	MissedRekeys  int      `json:"missed_rekeys,omitempty"`
	Port          uint16   `json:"port,omitempty"`    // where unicast rekeys go
	Removed       bool     `json:"removed,omitempty"` // off the rekey list
}

// String describes the group without its keys.
func (g GroupState) String() string {
	what := "members"
	if g.Delta {
		what = fmt.Sprintf("members changed, %d gone", len(g.MembersGone))
	}
	return fmt.Sprintf("group %s (id %d): seq %d, reserved %d, %s, %d TEKs, %d %s",
		g.Name, g.ID, g.Seq, g.SeqReserved, g.KEK, len(g.TEKs), len(g.Members), what)
}

// LogValue keeps keys out of structured logs.
func (g GroupState) LogValue() slog.Value { return slog.StringValue(g.String()) }

// String describes the KEK without its key.
func (k KEKState) String() string {
	return fmt.Sprintf("KEK spi %x, %d bits, expires %s", k.SPI, k.KeyBits, k.Expires.Format(time.RFC3339))
}

// LogValue keeps the key out of structured logs.
func (k KEKState) LogValue() slog.Value { return slog.StringValue(k.String()) }

// String describes the TEK without its keys.
func (t TEKState) String() string {
	return fmt.Sprintf("TEK spi %#08x, transform %d, %d bits, proto %d %s:%d -> %s:%d, expires %s",
		t.SPI, t.Transform, t.KeyBits, t.Proto, t.Src, t.SrcPort, t.Dst, t.DstPort, t.Expires.Format(time.RFC3339))
}

// LogValue keeps the keys out of structured logs.
func (t TEKState) LogValue() slog.Value { return slog.StringValue(t.String()) }
