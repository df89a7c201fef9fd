package loadgen

import (
	"net/netip"
	"slices"
	"time"

	"github.com/groupvpn/groupvpn/internal/gm"
	"github.com/groupvpn/groupvpn/internal/sadb"
)

// table is one simulated GM's SA database: its TEKs and its KEK, what a
// gm.Member writes through sadb.Dataplane and gm.KEKStore. It keeps only
// what the member reads back and what the generator checks (whether the
// GM holds a valid TEK), so that 100,000 of them fit beside the KS.
type table struct {
	teks []sadb.TEK
	kek  *sadb.KEK
	// want is every traffic selector a TEK was ever installed for: a GM
	// holds a valid TEK only if it holds one for each of them (a group's
	// data and voice TEKs are shortened to different lifetimes by a
	// removal: one still valid does not protect the other's traffic).
	want []selector
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
	return nil
}

func (t *table) TEKs() []sadb.TEK                  { return slices.Clone(t.teks) }
func (t *table) SetFailMode(string, sadb.FailMode) {}
func (t *table) FailMode(string) sadb.FailMode     { return sadb.FailOpen }

func (t *table) InstallKEK(k sadb.KEK) error { t.kek = &k; return nil }
func (t *table) DeleteKEK(string) error      { t.kek = nil; return nil }
func (t *table) KEKs() []sadb.KEK {
	if t.kek == nil {
		return nil
	}
	return []sadb.KEK{*t.kek}
}

// valid reports whether the GM holds a TEK it may use at now: installed,
// not expired, not deactivated by a rekey's DTD.
func valid(k *sadb.TEK, now time.Time) bool {
	return now.Before(k.Expires) && (k.Deactivate.IsZero() || now.Before(k.Deactivate))
}

// holdsValid reports whether, for every selector it was ever given a TEK
// for, the GM holds a TEK valid at now.
func (t *table) holdsValid(now time.Time) bool {
	if len(t.want) == 0 {
		return false
	}
	for _, sel := range t.want {
		ok := false
		for i := range t.teks {
			if selectorOf(&t.teks[i]) == sel && valid(&t.teks[i], now) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// expire drops the TEKs whose lifetime ended (what the node's sweep does
// with sadb.Expirer), and the KEK once it expired.
func (t *table) expire(now time.Time) {
	t.teks = slices.DeleteFunc(t.teks, func(k sadb.TEK) bool { return !now.Before(k.Expires) })
	if t.kek != nil && !t.kek.Expires.IsZero() && !now.Before(t.kek.Expires) {
		t.kek = nil
	}
}
