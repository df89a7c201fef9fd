package ks

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/gm"
	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: T1 (a member registering inside a rekey) — a member that
// registers after a rekey, while the members that got it may still send
// with the TEKs it replaced (RekeyATD) or accept them (RekeyDTD), is
// handed those TEKs too, after the new ones, in the SA payload and the KD
// payload (its keys keyGrace longer, for a pull whose message 2 listed
// them), each with the lifetime it has left: before, it got the new TEKs
// alone and dropped the other members' packets until they switched. The
// hand-out ends at RekeyDTD, or two re-registration windows and a second
// before a replaced TEK ends (a GM of an earlier version, which times its next
// registration by every TEK of its download, registers again after it:
// gm.ReregisterAt). A counter-mode TEK only to a member of
// version.ReplacedCounterTEKs or later (an earlier GM would send with it
// under the download's sender IDs, of the new generation), from a layout
// of its own whose keys are cleared when its hand-out ends; not one that ends less than a second before the new TEK
// (a shortened lifetime, two rekeys in one second), not after the window, not after replace-now or
// a GM removal, not for traffic the new policy no longer protects, and not
// once anything replaced the rekey's TEKs (a second rekey hands out what
// it replaced, the first rekey's TEKs, never older ones); a policy replace
// of the same traffic hands out as a plain rekey, and a scheduled rekey of
// 10-minute TEKs for 29 s. Counted (ReplacedHandedOut). Join and Keys
// (built per call) say the same as the payloads laid out once.
func TestRegistrationInsideRekeyGetsReplacedTEKs(t *testing.T) {
	cfg := gcmCBCGroup(time.Hour)
	s := New(Options{})
	if err := s.AddGroup(cfg, now); err != nil {
		t.Fatal(err)
	}
	id := isakmp.GroupID(7)
	n := 0
	// register returns the SPIs of the SA payload's TEKs and of the KD's
	// key packets (the KEK's and the SID packet left out), and the
	// lifetime left of the SA payload's TEKs, laid out and built per
	// call, which must agree.
	register := func(at time.Time, v ...version.Version) (sa, kd []uint32, life []uint64) {
		t.Helper()
		n++
		p := peer(netip.AddrFrom4([4]byte{10, 2, byte(n >> 8), byte(n)}).String())
		if len(v) > 0 {
			p.Version = v[0]
		}
		laid, err := s.JoinPayload(p, id, at)
		if err != nil {
			t.Fatal(err)
		}
		built, err := s.Join(p, id, at)
		if err != nil {
			t.Fatal(err)
		}
		if string(mustMarshal(t, built)) != string(mustMarshal(t, &laid)) {
			t.Fatal("the SA payload laid out differs from Join's")
		}
		for _, sat := range built.TEKs {
			sa = append(sa, sat.SPI)
			life = append(life, lifeLeft(t, sat.Attributes))
		}
		_, laidKD, err := s.KeysPayload(p, id, 1, at)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := s.Member("G", p.Addr.Addr())
		built2 := s.byName["G"].keyDownload(int(max(m.SIDBits, MinSIDBits)), m.SenderIDs, at, s.counterReplacedTo(p))
		if string(mustMarshal(t, &laidKD)) != string(mustMarshal(t, built2)) {
			t.Fatal("the KD payload laid out differs from Keys'")
		}
		for _, k := range built2.Packets {
			if k.KDType == isakmp.KDTEK {
				kd = append(kd, binary.BigEndian.Uint32(k.SPI))
			}
		}
		return sa, kd, life
	}
	g := s.byName["G"]
	spis := func() (gcm, cbc uint32) { return g.teks[0].spi, g.teks[1].spi }
	same := func(a, b []uint32) bool { return len(a) == len(b) && string(u32s(a)) == string(u32s(b)) }

	at := now.Add(time.Minute)
	gcm0, cbc0 := spis()
	if sa, _, _ := register(at); !same(sa, []uint32{gcm0, cbc0}) {
		t.Fatalf("before any rekey: TEKs %x", sa)
	}
	if _, err := s.Rekey("G", at); err != nil {
		t.Fatal(err)
	}
	gcm1, cbc1 := spis()
	replacedEnds := now.Add(time.Hour)
	for _, d := range []time.Duration{0, 5 * time.Second, RekeyATD, RekeyDTD - time.Second} {
		sa, kd, life := register(at.Add(d))
		if want := []uint32{gcm1, cbc1, cbc0}; !same(sa, want) || !same(kd, want) {
			t.Fatalf("%s after a rekey: TEKs %x, key packets %x; want %x (the CBC TEK it replaced last)", d, sa, kd, want)
		}
		if left := uint64(replacedEnds.Sub(at.Add(d)) / time.Second); life[2] != left {
			t.Fatalf("%s after a rekey: the replaced TEK handed out with %d s left, want %d (what it has)", d, life[2], left)
		}
		// A GM of an earlier version times its next registration by
		// every TEK of its download, the replaced one included: it falls
		// after the hand-out.
		earliest := at.Add(d).Add(time.Duration(slices.Min(life)) * time.Second)
		if next := gm.ReregisterAt(earliest, time.Hour, 0.999); next.Before(g.replaced.end) {
			t.Fatalf("%s after a rekey: an earlier GM registers again at %s, inside the hand-out (until %s)", d, next, g.replaced.end)
		}
	}
	if got := s.ReplacedHandedOut(); got != 4 {
		t.Fatalf("replaced_teks_handed_out %d, want 4", got)
	}
	// A member of version.ReplacedCounterTEKs or later gets the
	// counter-mode TEK too; one of 1.0.2, or of no version known (another
	// implementation), does not. Alternating: each from its layout.
	for _, v := range []version.Version{version.ReplacedCounterTEKs, version.Removal, {}, version.Current, version.Base} {
		want := []uint32{gcm1, cbc1, cbc0}
		if !v.Less(version.ReplacedCounterTEKs) {
			want = []uint32{gcm1, cbc1, gcm0, cbc0}
		}
		d := RekeyDTD - time.Second
		sa, kd, life := register(at.Add(d), v)
		if !same(sa, want) || !same(kd, want) {
			t.Fatalf("a member of version %s: TEKs %x, key packets %x; want %x", v, sa, kd, want)
		}
		for _, l := range life[2:] {
			if left := uint64(replacedEnds.Sub(at.Add(d)) / time.Second); l != left {
				t.Fatalf("a member of version %s: the replaced TEKs handed out with %d s left, want %d", v, life[2:], left)
			}
		}
	}
	if got := s.ReplacedHandedOut(); got != 9 {
		t.Fatalf("replaced_teks_handed_out %d, want 9", got)
	}
	// The SA payload ends it at RekeyDTD (the 1-hour TEKs' re-registration
	// window is 3 minutes); the key download keyGrace later, for the
	// registrations whose message 2 listed it.
	if sa, kd, _ := register(at.Add(RekeyDTD)); !same(sa, []uint32{gcm1, cbc1}) || !same(kd, []uint32{gcm1, cbc1, cbc0}) {
		t.Fatalf("after the hand-out: TEKs %x, key packets %x", sa, kd)
	}
	if sa, kd, _ := register(at.Add(RekeyDTD), version.Current); !same(sa, []uint32{gcm1, cbc1}) || !same(kd, []uint32{gcm1, cbc1, gcm0, cbc0}) {
		t.Fatalf("after the hand-out, a member of %s: TEKs %x, key packets %x", version.Current, sa, kd)
	}
	ctrOut := g.out[1]
	if ctrOut == nil {
		t.Fatal("no layout for the members that take counter-mode TEKs inside the grace")
	}
	if sa, kd, _ := register(at.Add(RekeyDTD + keyGrace)); !same(sa, []uint32{gcm1, cbc1}) || !same(kd, []uint32{gcm1, cbc1}) {
		t.Fatalf("after the grace: TEKs %x, key packets %x", sa, kd)
	}
	// Its layout is gone with the replaced keys it held, whoever
	// registers first.
	if g.out[1] != nil || !allZero(ctrOut.kdBytes()) {
		t.Fatal("the layout of the replaced counter-mode TEKs kept after the grace, or its keys not cleared")
	}
	if sa, kd, _ := register(at.Add(RekeyDTD+keyGrace), version.Current); !same(sa, []uint32{gcm1, cbc1}) || !same(kd, []uint32{gcm1, cbc1}) {
		t.Fatalf("after the grace, a member of %s: TEKs %x, key packets %x", version.Current, sa, kd)
	}

	// A second rekey inside the first's window: what it replaced.
	at = at.Add(10 * time.Second)
	if _, err := s.Rekey("G", at); err != nil {
		t.Fatal(err)
	}
	gcm2, cbc2 := spis()
	if sa, _, _ := register(at); !same(sa, []uint32{gcm2, cbc2, cbc1}) {
		t.Fatalf("after a second rekey: TEKs %x", sa)
	}

	// What replaces TEKs for another reason ends the hand-out, or has
	// none: a GM removal, replace-now, a rekey whose ACL changed the
	// traffic. A policy replace that keeps the traffic hands out as a
	// plain rekey does (its members too send with the old TEKs until the
	// activation delay).
	if _, err := s.Remove("G", false, at); err != nil {
		t.Fatal(err)
	}
	if sa, _, _ := register(at); len(sa) != 2 {
		t.Fatalf("after a GM removal: TEKs %x", sa)
	}
	at = at.Add(time.Minute)
	if _, err := s.Rekey("G", at); err != nil {
		t.Fatal(err)
	}
	if sa, _, _ := register(at); len(sa) != 3 {
		t.Fatalf("after a rekey following the removal: TEKs %x", sa)
	}
	_, cbc3 := spis()
	at = at.Add(time.Second) // a TEK is handed out if it ends a second before the new one, at least
	if _, err := s.ReplaceRekey("G", isakmp.ModeShorten, at); err != nil {
		t.Fatal(err)
	}
	gcm4, cbc4 := spis()
	if sa, _, _ := register(at); !same(sa, []uint32{gcm4, cbc4, cbc3}) {
		t.Fatalf("after a policy replace of the same traffic: TEKs %x", sa)
	}
	if _, err := s.ReplaceRekey("G", isakmp.ModeNow, at); err != nil {
		t.Fatal(err)
	}
	if sa, _, _ := register(at); len(sa) != 2 {
		t.Fatalf("after replace-now: TEKs %x", sa)
	}
	c2 := cfg
	c2.TEKs = append([]TEKPolicy(nil), cfg.TEKs...)
	c2.TEKs[1].Selectors = []Selector{{Src: netip.MustParsePrefix("192.168.0.0/16"), Dst: netip.MustParsePrefix("192.168.0.0/16")}}
	if err := s.UpdatePolicy(c2); err != nil { // a committed change: P1
		t.Fatal(err)
	}
	if _, err := s.Rekey("G", at); err != nil {
		t.Fatal(err)
	}
	if sa, _, _ := register(at); len(sa) != 2 {
		t.Fatalf("after a rekey for other traffic: TEKs %x", sa)
	}

	// A GM that times its registrations by every TEK of its download
	// (an earlier version) would register again and again while the
	// hand-out lasts: a TEK is handed out only while it has more than two
	// of the members' re-registration windows left (2 x 3 min), and the
	// hand-out ends two windows before it ends.
	if err := s.UpdatePolicy(cfg); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		left time.Duration
		n    int
	}{{6*time.Minute + time.Second, 2}, {6*time.Minute + 30*time.Second, 3}} {
		if _, err := s.Rekey("G", at); err != nil {
			t.Fatal(err)
		}
		at = g.teks[1].expires.Add(-c.left)
		if _, err := s.Rekey("G", at); err != nil {
			t.Fatal(err)
		}
		sa, _, life := register(at)
		if len(sa) != c.n {
			t.Fatalf("a rekey when the TEK it replaces has %s left: TEKs %x, want %d", c.left, sa, c.n)
		}
		if c.n == 3 {
			if end := g.replaced.end.Sub(at); end != 29*time.Second {
				t.Fatalf("a rekey when the TEK it replaces has %s left: handed out for %s, want 29s (to two windows and a second before it ends)", c.left, end)
			}
			earliest := at.Add(time.Duration(slices.Min(life)) * time.Second)
			if next := gm.ReregisterAt(earliest, time.Hour, 0.999); next.Before(g.replaced.end) {
				t.Fatalf("an earlier GM registers again at %s, inside the hand-out (until %s)", next, g.replaced.end)
			}
		}
	}

	// A TEK whose policy's lifetime was shortened ends after the new one:
	// not handed out (a GM sends with the TEK that ends later).
	long := gcmCBCGroup(24 * time.Hour)
	s = New(Options{})
	if err := s.AddGroup(long, now); err != nil {
		t.Fatal(err)
	}
	g = s.byName["G"]
	if err := s.UpdatePolicy(gcmCBCGroup(time.Hour)); err != nil {
		t.Fatal(err)
	}
	at = now.Add(time.Hour)
	if _, err := s.Rekey("G", at); err != nil {
		t.Fatal(err)
	}
	if sa, _, _ := register(at); len(sa) != 2 {
		t.Fatalf("a rekey shortening the TEKs' lifetime: TEKs %x", sa)
	}

	// Two rekeys in one second: the first's TEKs end in the same second
	// as the second's, and a GM could not tell which replaced which.
	at = now.Add(2 * time.Hour)
	if _, err := s.Rekey("G", at); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rekey("G", at.Add(500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if sa, _, _ := register(at.Add(500 * time.Millisecond)); len(sa) != 2 {
		t.Fatalf("two rekeys in one second: TEKs %x", sa)
	}

	// TEKs of 10 minutes, rekeyed when due (three 30 s windows before
	// they end): handed out for one window, less a second.
	short := gcmCBCGroup(10 * time.Minute)
	short.TEKs[0].Lifetime = 10 * time.Minute
	s = New(Options{})
	if err := s.AddGroup(short, now); err != nil {
		t.Fatal(err)
	}
	g = s.byName["G"]
	at = s.NextRekey("G")
	_, cbcOld := spis()
	if _, err := s.Rekey("G", at); err != nil {
		t.Fatal(err)
	}
	if sa, _, _ := register(at); len(sa) != 3 || sa[2] != cbcOld || g.replaced.end.Sub(at) != 29*time.Second {
		t.Fatalf("a scheduled rekey of 10-minute TEKs: TEKs %x, handed out for %s", sa, g.replaced.end.Sub(at))
	}

	// A counter-mode TEK does not shorten the hand-out (only members of
	// 1.0.3 get it, which time their registrations by the current TEKs):
	// AES-GCM TEKs of 10 minutes, AES-CBC ones of an hour, a scheduled
	// rekey 90 s before the AES-GCM TEK ends. The AES-CBC TEK is handed
	// out for the full 90 s; the AES-GCM one, which would end before the
	// hand-out and its grace, to nobody.
	mixed := gcmCBCGroup(time.Hour)
	mixed.TEKs[0].Lifetime = 10 * time.Minute
	s = New(Options{})
	if err := s.AddGroup(mixed, now); err != nil {
		t.Fatal(err)
	}
	g = s.byName["G"]
	at = s.NextRekey("G")
	_, cbcOld = spis()
	if _, err := s.Rekey("G", at); err != nil {
		t.Fatal(err)
	}
	if sa, _, _ := register(at, version.Current); len(sa) != 3 || sa[2] != cbcOld || g.replaced.end.Sub(at) != RekeyDTD {
		t.Fatalf("a scheduled rekey of 10-minute AES-GCM TEKs and 1-hour AES-CBC ones: TEKs %x, handed out for %s", sa, g.replaced.end.Sub(at))
	}

	// A KS told to announce 1.0.2 behaves as one (SPEC V1): the AES-CBC
	// TEK alone, to a member of 1.0.3 too.
	s = New(Options{Version: version.Removal})
	if err := s.AddGroup(cfg, now); err != nil {
		t.Fatal(err)
	}
	g = s.byName["G"]
	at = now.Add(time.Minute)
	_, cbc0 = spis()
	if _, err := s.Rekey("G", at); err != nil {
		t.Fatal(err)
	}
	gcm1, cbc1 = spis()
	if sa, kd, _ := register(at, version.Current); !same(sa, []uint32{gcm1, cbc1, cbc0}) || !same(kd, []uint32{gcm1, cbc1, cbc0}) {
		t.Fatalf("a KS of 1.0.2, a member of %s: TEKs %x, key packets %x", version.Current, sa, kd)
	}
}

func u32s(v []uint32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = append(b, byte(x>>24), byte(x>>16), byte(x>>8), byte(x))
	}
	return b
}
