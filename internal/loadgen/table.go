package loadgen

import (
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
// GM holds a valid TEK), so that 100,000 of them fit beside the KS.
type table struct {
	teks   []sadb.TEK
	kek    sadb.KEK
	hasKEK bool
	// want is every traffic selector a TEK was ever installed for: a GM
	// holds a valid TEK only if it holds one for each of them (a group's
	// data and voice TEKs are shortened to different lifetimes by a
	// removal: one still valid does not protect the other's traffic).
	want []selector
	// until is when the TEKs held stop covering every selector of want
	// (the earliest, over the selectors, of the latest end of validity of
	// a TEK for it), valid when covered: holdsValid is then one
	// comparison, and is recomputed by each change of teks, the only
	// thing it depends on besides the time.
	until   time.Time
	covered bool
	// expiry is the earliest expiry of teks (expire has nothing to drop
	// before it), also recomputed at each change of teks.
	expiry time.Time
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
	if sel := selectorOf(&k); !slices.Contains(t.want, sel) {
		t.want = append(t.want, sel)
	}
	defer t.cover()
	for i := range t.teks {
		if t.teks[i].SPI == k.SPI {
			t.teks[i] = k
			return nil
		}
	}
	t.teks = append(t.teks, k)
	return nil
}

func (t *table) DeleteTEK(_ string, spi uint32) error {
	t.teks = slices.DeleteFunc(t.teks, func(k sadb.TEK) bool { return k.SPI == spi })
	t.cover()
	return nil
}

func (t *table) TEKs() []sadb.TEK                  { return slices.Clone(t.teks) }
func (t *table) SetFailMode(string, sadb.FailMode) {}
func (t *table) FailMode(string) sadb.FailMode     { return sadb.FailOpen }

func (t *table) InstallKEK(k sadb.KEK) error { t.kek, t.hasKEK = k, true; return nil }
func (t *table) DeleteKEK(string) error      { t.kek, t.hasKEK = sadb.KEK{}, false; return nil }
func (t *table) KEKs() []sadb.KEK {
	if !t.hasKEK {
		return nil
	}
	return []sadb.KEK{t.kek}
}

// holdsKEK reports whether the GM holds the KEK spi.
func (t *table) holdsKEK(spi [isakmp.KEKSPILen]byte) bool { return t.hasKEK && t.kek.SPI == spi }

// validUntil is when a TEK stops being one the GM may use: at its
// expiry, or at its deactivation by a rekey's DTD if that is earlier (it
// is valid at now if now is before it).
func validUntil(k *sadb.TEK) time.Time {
	if !k.Deactivate.IsZero() && k.Deactivate.Before(k.Expires) {
		return k.Deactivate
	}
	return k.Expires
}

// cover recomputes until, covered and expiry from teks and want.
func (t *table) cover() {
	t.expiry = time.Time{}
	for i := range t.teks {
		if i == 0 || t.teks[i].Expires.Before(t.expiry) {
			t.expiry = t.teks[i].Expires
		}
	}
	t.until, t.covered = time.Time{}, len(t.want) > 0
	for n, sel := range t.want {
		var last time.Time
		found := false
		for i := range t.teks {
			if selectorOf(&t.teks[i]) != sel {
				continue
			}
			if u := validUntil(&t.teks[i]); !found || u.After(last) {
				last, found = u, true
			}
		}
		if !found {
			t.covered = false
			return
		}
		if n == 0 || last.Before(t.until) {
			t.until = last
		}
	}
}

// holdsValid reports whether, for every selector it was ever given a TEK
// for, the GM holds a TEK valid at now (installed, not expired, not
// deactivated by a rekey's DTD).
func (t *table) holdsValid(now time.Time) bool { return t.covered && now.Before(t.until) }

// expire drops the TEKs whose lifetime ended (what the node's sweep does
// with sadb.Expirer), and the KEK once it expired.
func (t *table) expire(now time.Time) {
	if n := len(t.teks); n > 0 && !now.Before(t.expiry) {
		t.teks = slices.DeleteFunc(t.teks, func(k sadb.TEK) bool { return !now.Before(k.Expires) })
		t.cover()
	}
	if t.hasKEK && !t.kek.Expires.IsZero() && !now.Before(t.kek.Expires) {
		t.DeleteKEK("")
	}
}
