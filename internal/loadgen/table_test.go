package loadgen

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/sadb"
)

// proves: R2 (issue 18: what "a valid TEK" means in the generator's
// count) — a GM whose data TEK expired while its voice TEK (shortened to a
// longer lifetime by the same removal) is still valid does not hold a
// valid TEK: each selector it was given keys for needs one.
func TestHoldsValidNeedsEverySelector(t *testing.T) {
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	data := sadb.TEK{SPI: 1, Src: netip.MustParsePrefix("10.10.0.0/16"), Dst: netip.MustParsePrefix("10.10.0.0/16"), Expires: now.Add(180 * time.Second)}
	voice := sadb.TEK{SPI: 2, Src: netip.MustParsePrefix("10.20.0.0/16"), Dst: netip.MustParsePrefix("10.20.0.0/16"), IPProto: 17, DstPort: 5060,
		Expires: now.Add(360 * time.Second)}
	var tab table
	if tab.holdsValid(now) {
		t.Fatal("an empty table holds a valid TEK")
	}
	tab.InstallTEK(data)
	tab.InstallTEK(voice)
	if !tab.holdsValid(now) {
		t.Fatal("both TEKs valid, yet not valid")
	}
	if tab.holdsValid(now.Add(200 * time.Second)) {
		t.Fatal("the data TEK expired, the voice TEK alone counted as valid")
	}
	tab.expire(now.Add(200 * time.Second))
	if tab.holdsValid(now.Add(200 * time.Second)) {
		t.Fatal("the data TEK expired and was removed, the voice TEK alone counted as valid")
	}
	data.SPI, data.Expires = 3, now.Add(time.Hour)
	tab.InstallTEK(data)
	if !tab.holdsValid(now.Add(200 * time.Second)) {
		t.Fatal("a new data TEK installed, still not valid")
	}
	voice.Deactivate = now.Add(250 * time.Second)
	tab.InstallTEK(voice)
	if tab.holdsValid(now.Add(260 * time.Second)) {
		t.Fatal("the voice TEK deactivated (DTD), still counted as valid")
	}
}

// holdsValidScan is what holdsValid computed before it was cached: for
// each selector ever given a TEK, a TEK for it valid at now.
func holdsValidScan(t *table, now time.Time) bool {
	if len(t.want) == 0 {
		return false
	}
	for _, sel := range t.want {
		ok := false
		for i := range t.teks {
			k := &t.teks[i]
			if selectorOf(k) == sel && now.Before(k.Expires) && (k.Deactivate.IsZero() || now.Before(k.Deactivate)) {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// proves: R2 (issue 18: the "members without a valid TEK" count stays
// exact) — holdsValid, now one comparison against a bound recomputed at
// each change of the TEKs, answers as the scan of every TEK did, through
// 20,000 random installs (replacing by SPI, with and without DTD, zero
// lifetimes included), deletions and expiries, at random times; and expire,
// which looks at the TEKs only once the earliest expiry is reached, drops
// every expired one.
func TestHoldsValidCachedIsTheScan(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	sels := []sadb.TEK{
		{Src: netip.MustParsePrefix("10.10.0.0/16"), Dst: netip.MustParsePrefix("10.10.0.0/16")},
		{Src: netip.MustParsePrefix("10.20.0.0/16"), Dst: netip.MustParsePrefix("10.20.0.0/16"), IPProto: 17, DstPort: 5060},
	}
	r := rand.New(rand.NewPCG(3, 4))
	at := func() time.Time {
		if r.IntN(10) == 0 {
			return time.Time{}
		}
		return t0.Add(time.Duration(r.IntN(100)) * time.Second)
	}
	var tab table
	for step := range 20000 {
		switch r.IntN(6) {
		case 0, 1, 2:
			k := sels[r.IntN(len(sels))]
			k.SPI = uint32(r.IntN(5))
			k.Expires = at()
			if r.IntN(3) == 0 {
				k.Deactivate = at()
			}
			tab.InstallTEK(k)
		case 3:
			tab.DeleteTEK("", uint32(r.IntN(5)))
		case 4:
			now := t0.Add(time.Duration(r.IntN(100)) * time.Second)
			tab.expire(now)
			for _, k := range tab.teks {
				if !now.Before(k.Expires) {
					t.Fatalf("step %d: a TEK expired at %s kept at %s", step, k.Expires.Sub(t0), now.Sub(t0))
				}
			}
		}
		for range 3 {
			now := t0.Add(time.Duration(r.IntN(110)) * time.Second)
			if got, want := tab.holdsValid(now), holdsValidScan(&tab, now); got != want {
				t.Fatalf("step %d, %s: holdsValid %v, the scan %v (TEKs %+v)", step, now.Sub(t0), got, want, tab.teks)
			}
		}
	}
}
