package loadgen

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/isakmp"
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
	tab := table{base: &tableBase{t0: time.Now()}}
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
	teks := t.TEKs()
	for _, i := range t.want {
		sel := t.base.sels[i]
		ok := false
		for i := range teks {
			k := &teks[i]
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
	tab := table{base: &tableBase{t0: time.Now()}}
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
			for _, k := range tab.TEKs() {
				if !now.Before(k.Expires) {
					t.Fatalf("step %d: a TEK expired at %s kept at %s", step, k.Expires.Sub(t0), now.Sub(t0))
				}
			}
		}
		for range 3 {
			now := t0.Add(time.Duration(r.IntN(110)) * time.Second)
			if got, want := tab.holdsValid(now), holdsValidScan(&tab, now); got != want {
				t.Fatalf("step %d, %s: holdsValid %v, the scan %v (TEKs %+v)", step, now.Sub(t0), got, want, tab.TEKs())
			}
		}
	}
}

// gmView is what gm reads of a TEK it gets back from its data plane
// (dp.TEKs(): Shorten, HoldSending, ApplyRekey's deactivation and sender
// IDs, removal and policy replace, PullMessage), times compared as
// instants.
type gmView struct {
	group                            string
	spi                              uint32
	sel                              selector
	sids                             string
	sidBits                          int
	expires, sendFrom, deactivate    int64
	expiresZ, sendFromZ, deactivateZ bool
	configured                       time.Duration
}

func viewOf(k sadb.TEK, t0 time.Time) gmView {
	return gmView{group: k.Group, spi: k.SPI, sel: selectorOf(&k), sids: fmt.Sprint(k.SenderIDs), sidBits: k.SIDBits,
		expires: int64(k.Expires.Sub(t0)), sendFrom: int64(k.SendFrom.Sub(t0)), deactivate: int64(k.Deactivate.Sub(t0)),
		expiresZ: k.Expires.IsZero(), sendFromZ: k.SendFrom.IsZero(), deactivateZ: k.Deactivate.IsZero(), configured: k.Configured}
}

// proves: N1 (issue 18: a simulated GM's memory) — the table keeps of a
// TEK only what gm reads back (no keys; its selector shared by the
// shard's GMs; times as offsets from the shard's instant) and of the KEK
// its own copy of the key and the shard's copy of the KS's public key:
// through 5,000 random installs (the bench group's selectors and others,
// sender IDs, DTDs, zero times), deletions and KEK changes, with times
// read from the clock (a monotonic reading) and without, what TEKs() and
// KEKs() give back is what an SA database keeping everything
// (sadb.Memory) gives, on every field gm reads; and the KEK's key no
// longer aliases the buffer it came in.
func TestTableGivesBackWhatGMReads(t *testing.T) {
	clock := time.Now()
	base := &tableBase{group: "G", groupID: 7, t0: clock}
	tab := table{base: base}
	mem := sadb.NewMemory()
	r := rand.New(rand.NewPCG(5, 6))
	sels := []sadb.TEK{
		{Src: netip.MustParsePrefix("10.10.0.0/16"), Dst: netip.MustParsePrefix("10.10.0.0/16")},
		{Src: netip.MustParsePrefix("10.20.0.0/16"), Dst: netip.MustParsePrefix("10.20.0.0/16"), IPProto: 17, DstPort: 5060},
		{Src: netip.MustParsePrefix("10.30.0.0/16"), Dst: netip.MustParsePrefix("10.40.0.0/16"), IPProto: 6, SrcPort: 22},
	}
	var kekKey, kekSig []byte // the KEK's keys as installed
	at := func() time.Time {
		switch r.IntN(4) {
		case 0:
			return time.Time{}
		case 1:
			return time.Date(2026, 12, 6, 0, 0, r.IntN(7200), 0, time.UTC) // no monotonic reading
		}
		return clock.Add(time.Duration(r.IntN(7200)) * time.Second) // as gm computes them: now.Add
	}
	for step := range 5000 {
		switch r.IntN(5) {
		case 0, 1, 2:
			k := sels[r.IntN(len(sels))]
			k.Group, k.GroupID, k.SPI = "G", 7, uint32(1+r.IntN(6))
			k.Transform, k.KeyBits, k.EncKey, k.AuthKey = 12, 256, make([]byte, 32), make([]byte, 32)
			k.Expires, k.SendFrom, k.Deactivate, k.Installed = at(), at(), at(), at()
			k.Configured, k.Lifetime = time.Duration(r.IntN(3600))*time.Second, time.Hour
			if r.IntN(3) == 0 {
				k.SenderIDs, k.SIDBits = []uint32{uint32(r.IntN(100))}, 8+r.IntN(9)
			}
			if err := tab.InstallTEK(k); err != nil {
				t.Fatal(err)
			}
			mem.InstallTEK(k)
		case 3:
			spi := uint32(1 + r.IntN(6))
			tab.DeleteTEK("G", spi)
			mem.DeleteTEK("G", spi)
		case 4:
			if r.IntN(4) == 0 {
				tab.DeleteKEK("G")
				mem.DeleteKEK("G")
				break
			}
			msg := make([]byte, 200) // the decrypted message the keys came in
			for i := range msg {
				msg[i] = byte(r.Uint32())
			}
			k := sadb.KEK{Group: "G", GroupID: 7, SPI: [16]byte{byte(r.IntN(3))}, Alg: isakmp.KEKAlgAES, KeyBits: 128,
				Key: msg[10:42], SigAlg: isakmp.SigAlg(r.IntN(3)), SigKey: msg[50 : 50+r.IntN(2)*91], Ack: r.IntN(2) == 0,
				Multicast: netip.MustParseAddrPort("239.192.18.1:848"), Installed: at(), Expires: at()}
			if len(k.SigKey) == 0 {
				k.SigKey = nil
			}
			tab.InstallKEK(k)
			mem.InstallKEK(k)
			kekKey, kekSig = slices.Clone(k.Key), slices.Clone(k.SigKey)
			got := tab.KEKs()[0].Key
			if &got[0] == &msg[10] {
				t.Fatalf("step %d: the KEK's key is the message's", step)
			}
			clear(msg)
		}
		want, got := map[uint32]gmView{}, map[uint32]gmView{}
		for _, k := range mem.TEKs() {
			want[k.SPI] = viewOf(k, clock)
		}
		for _, k := range tab.TEKs() {
			got[k.SPI] = viewOf(k, clock)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: TEKs\n got %+v\nwant %+v", step, got, want)
		}
		gk, wk := tab.KEKs(), mem.KEKs()
		if len(gk) != len(wk) {
			t.Fatalf("step %d: %d KEKs, want %d", step, len(gk), len(wk))
		}
		if len(wk) == 1 {
			g, w := gk[0], wk[0]
			if !g.Installed.Equal(w.Installed) || !g.Expires.Equal(w.Expires) || g.Installed.IsZero() != w.Installed.IsZero() ||
				g.Expires.IsZero() != w.Expires.IsZero() {
				t.Fatalf("step %d: KEK times %v %v, want %v %v", step, g.Installed, g.Expires, w.Installed, w.Expires)
			}
			// The message was cleared since: sadb.Memory's key aliases it,
			// the table's is as installed.
			g.Installed, g.Expires, w.Installed, w.Expires = time.Time{}, time.Time{}, time.Time{}, time.Time{}
			w.Key, w.SigKey = kekKey, kekSig
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("step %d: KEK\n got %+v\nwant %+v", step, g, w)
			}
		}
	}
}
