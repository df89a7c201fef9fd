package loadgen

import (
	"bytes"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/groupvpn/groupvpn/internal/gm"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/isakmp"
)

// table is one simulated GM's SA database: its TEKs and its KEK, what a
// gm.Member writes through sadb.Dataplane and gm.KEKStore. It keeps only
// what the member reads back and what the generator checks (whether the
// GM holds a valid TEK), so that 100,000 of them fit beside the KS:
//
//   - of a TEK, its SPI, traffic selector (an index in the shard's
//     tableBase), end of validity, deactivation, start of sending,
//     configured lifetime and sender IDs: what gm reads of dp.TEKs() (to
//     shorten, deactivate, hold sending, carry sender IDs, delete), and
//     no keys (the generator sends no traffic);
//   - of the KEK, all gm reads, its key its own copy and the KS's public
//     rekey key shared by the shard's GMs (tableBase): the decrypted
//     GROUPKEY-PULL message they came in is not kept alive by them.
//
// Times are kept as nanoseconds since the shard's tableBase.t0 (a
// time.Time with Go's monotonic reading), given back as t0 plus them: a
// time gm computed from a clock reading (now.Add) comes back with the
// same monotonic reading, so comparisons with the clock are unchanged.
// TEKs() and KEKs() give sadb values made from these, the fields gm does
// not read left zero.
type table struct {
	base   *tableBase
	teks   []tekEntry
	kek    kekEntry
	hasKEK bool
	// covered: the TEKs held cover every selector of want; until is then
	// when they stop covering them (the earliest, over the selectors, of
	// the latest end of validity of a TEK for it): holdsValid is one
	// comparison, and is recomputed by each change of teks, the only
	// thing it depends on besides the time.
	covered bool
	until   int64
	// expiry is the earliest expiry of teks (expire has nothing to drop
	// before it), also recomputed at each change of teks.
	expiry int64
	// want is every traffic selector (index in base.sels) a TEK was ever
	// installed for: a GM holds a valid TEK only if it holds one for each
	// of them (a group's data and voice TEKs are shortened to different
	// lifetimes by a removal: one still valid does not protect the
	// other's traffic).
	want []uint16
}

// tableBase is what the tables of a shard's GMs share (only the shard
// touches them): the group they are members of, the instant their times
// count from, the traffic selectors and the KS's public rekey keys seen.
type tableBase struct {
	group   string
	groupID uint32
	t0      time.Time
	sels    []selector
	sigKeys [][]byte
}

// maxSigKeys bounds the public rekey keys a shard shares; a table given
// another one keeps its own copy.
const maxSigKeys = 16

// noTime is a zero time.Time (for a deactivation: none).
const noTime = math.MinInt64

// at is t as kept: nanoseconds since t0 (noTime for the zero time).
func (b *tableBase) at(t time.Time) int64 {
	if t.IsZero() {
		return noTime
	}
	d := int64(t.Sub(b.t0))
	if d == noTime {
		d++ // saturated: still before any time the generator reads
	}
	return d
}

// time is a kept time back as a time.Time.
func (b *tableBase) time(v int64) time.Time {
	if v == noTime {
		return time.Time{}
	}
	return b.t0.Add(time.Duration(v))
}

// selector is the index of the traffic selector sel, added if new.
func (b *tableBase) selector(sel selector) (uint16, error) {
	if i := slices.Index(b.sels, sel); i >= 0 {
		return uint16(i), nil
	}
	if len(b.sels) > math.MaxUint16 {
		return 0, fmt.Errorf("loadgen: more than %d traffic selectors", math.MaxUint16+1)
	}
	b.sels = append(b.sels, sel)
	return uint16(len(b.sels) - 1), nil
}

// sigKey is k, shared with the other tables of the shard if they were
// given the same one (copied: k is the decrypted message's).
func (b *tableBase) sigKey(k []byte) []byte {
	if k == nil {
		return nil
	}
	for _, s := range b.sigKeys {
		if bytes.Equal(s, k) {
			return s
		}
	}
	k = bytes.Clone(k)
	if len(b.sigKeys) < maxSigKeys {
		b.sigKeys = append(b.sigKeys, k)
	}
	return k
}

// tekEntry is a TEK as a table keeps it.
type tekEntry struct {
	spi        uint32
	sel        uint16 // in tableBase.sels
	sidBits    uint8
	expires    int64
	deactivate int64
	sendFrom   int64
	configured time.Duration
	sids       []uint32
}

// kekEntry is a KEK as a table keeps it.
type kekEntry struct {
	spi       [isakmp.KEKSPILen]byte
	alg       isakmp.KEKAlg
	sigAlg    isakmp.SigAlg
	keyBits   uint16
	ack       bool
	key       []byte // its own copy, never changed
	sigKey    []byte // tableBase's
	multicast netip.AddrPort
	installed int64
	expires   int64
}

// selector is the traffic a TEK protects.
type selector struct {
	src, dst         netip.Prefix
	proto            uint8
	srcPort, dstPort uint16
}

func selectorOf(k *sadb.TEK) selector {
	return selector{src: k.Src, dst: k.Dst, proto: k.IPProto, srcPort: k.SrcPort, dstPort: k.DstPort}
}

var (
	_ sadb.Dataplane = (*table)(nil)
	_ gm.KEKStore    = (*table)(nil)
)

func (t *table) InstallTEK(k sadb.TEK) error {
	b := t.base
	if k.Group != b.group {
		return fmt.Errorf("loadgen: a TEK of group %q for a member of %q", k.Group, b.group)
	}
	if k.SIDBits < 0 || k.SIDBits > math.MaxUint8 {
		return fmt.Errorf("loadgen: TEK 0x%08x: %d-bit sender IDs", k.SPI, k.SIDBits)
	}
	sel, err := b.selector(selectorOf(&k))
	if err != nil {
		return err
	}
	if !slices.Contains(t.want, sel) {
		if t.want == nil {
			t.want = make([]uint16, 0, 2) // room for the bench group's two selectors (data, voice) at once
		}
		t.want = append(t.want, sel)
	}
	e := tekEntry{spi: k.SPI, sel: sel, sidBits: uint8(k.SIDBits), expires: b.at(k.Expires), deactivate: b.at(k.Deactivate),
		sendFrom: b.at(k.SendFrom), configured: k.Configured, sids: k.SenderIDs}
	defer t.cover()
	for i := range t.teks {
		if t.teks[i].spi == k.SPI {
			t.teks[i] = e
			return nil
		}
	}
	if t.teks == nil {
		t.teks = make([]tekEntry, 0, 2) // as want
	}
	t.teks = append(t.teks, e)
	return nil
}

func (t *table) DeleteTEK(_ string, spi uint32) error {
	t.teks = slices.DeleteFunc(t.teks, func(e tekEntry) bool { return e.spi == spi })
	t.cover()
	return nil
}

// TEKs gives the TEKs held: what gm reads of them (no keys).
func (t *table) TEKs() []sadb.TEK {
	if len(t.teks) == 0 {
		return nil
	}
	b := t.base
	out := make([]sadb.TEK, len(t.teks))
	for i, e := range t.teks {
		s := &b.sels[e.sel]
		out[i] = sadb.TEK{Group: b.group, GroupID: b.groupID, SPI: e.spi, Src: s.src, Dst: s.dst, IPProto: s.proto,
			SrcPort: s.srcPort, DstPort: s.dstPort, SenderIDs: e.sids, SIDBits: int(e.sidBits), Expires: b.time(e.expires),
			Configured: e.configured, SendFrom: b.time(e.sendFrom), Deactivate: b.time(e.deactivate)}
	}
	return out
}

func (t *table) SetFailMode(string, sadb.FailMode) {}
func (t *table) FailMode(string) sadb.FailMode     { return sadb.FailOpen }

func (t *table) InstallKEK(k sadb.KEK) error {
	if k.KeyBits < 0 || k.KeyBits > math.MaxUint16 {
		return fmt.Errorf("loadgen: a %d-bit KEK", k.KeyBits)
	}
	b := t.base
	key := k.Key
	if !t.hasKEK || !bytes.Equal(t.kek.key, key) {
		key = bytes.Clone(key)
	} else {
		key = t.kek.key // the same key again (a re-registration): shared, never changed
	}
	t.kek = kekEntry{spi: k.SPI, alg: k.Alg, sigAlg: k.SigAlg, keyBits: uint16(k.KeyBits), ack: k.Ack, key: key,
		sigKey: b.sigKey(k.SigKey), multicast: k.Multicast, installed: b.at(k.Installed), expires: b.at(k.Expires)}
	t.hasKEK = true
	return nil
}

func (t *table) DeleteKEK(string) error { t.kek, t.hasKEK = kekEntry{}, false; return nil }

func (t *table) KEKs() []sadb.KEK {
	if !t.hasKEK {
		return nil
	}
	b, k := t.base, &t.kek
	return []sadb.KEK{{Group: b.group, GroupID: b.groupID, SPI: k.spi, Alg: k.alg, KeyBits: int(k.keyBits), Key: k.key,
		SigAlg: k.sigAlg, SigKey: k.sigKey, Ack: k.ack, Multicast: k.multicast, Installed: b.time(k.installed), Expires: b.time(k.expires)}}
}

// holdsKEK reports whether the GM holds the KEK spi.
func (t *table) holdsKEK(spi [isakmp.KEKSPILen]byte) bool { return t.hasKEK && t.kek.spi == spi }

// validUntil is when a TEK stops being one the GM may use: at its
// expiry, or at its deactivation by a rekey's DTD if that is earlier (it
// is valid at now if now is before it).
func validUntil(e *tekEntry) int64 {
	if e.deactivate != noTime && e.deactivate < e.expires {
		return e.deactivate
	}
	return e.expires
}

// cover recomputes until, covered and expiry from teks and want.
func (t *table) cover() {
	t.expiry = 0
	for i := range t.teks {
		if i == 0 || t.teks[i].expires < t.expiry {
			t.expiry = t.teks[i].expires
		}
	}
	t.until, t.covered = 0, len(t.want) > 0
	for n, sel := range t.want {
		var last int64
		found := false
		for i := range t.teks {
			if t.teks[i].sel != sel {
				continue
			}
			if u := validUntil(&t.teks[i]); !found || u > last {
				last, found = u, true
			}
		}
		if !found {
			t.covered = false
			return
		}
		if n == 0 || last < t.until {
			t.until = last
		}
	}
}

// holdsValid reports whether, for every selector it was ever given a TEK
// for, the GM holds a TEK valid at now (installed, not expired, not
// deactivated by a rekey's DTD).
func (t *table) holdsValid(now time.Time) bool { return t.covered && t.base.at(now) < t.until }

// expire drops the TEKs whose lifetime ended (what the node's sweep does
// with sadb.Expirer), and the KEK once it expired.
func (t *table) expire(now time.Time) {
	at := t.base.at(now)
	if n := len(t.teks); n > 0 && at >= t.expiry {
		t.teks = slices.DeleteFunc(t.teks, func(e tekEntry) bool { return at >= e.expires })
		t.cover()
	}
	if t.hasKEK && t.kek.expires != noTime && at >= t.kek.expires {
		t.DeleteKEK("")
	}
}
