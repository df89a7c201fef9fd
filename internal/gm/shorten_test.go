package gm

import (
	"fmt"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/sadb"
)

// proves: R2, P3 — TEK_SLT = MIN(TEK_RLT, MAX(90s, MIN(5% TEK_CLT, 3600s)))
// across configured lifetimes from 60 s to 8 h and remaining lifetimes
// around each boundary (90 s, 5%, 3600 s).
func TestShortenedLifetime(t *testing.T) {
	s := time.Second
	cases := []struct{ clt, rlt, want time.Duration }{
		// 5% of CLT below 90 s: the 90 s floor applies (unless RLT is less).
		{60 * s, 60 * s, 60 * s},
		{60 * s, 30 * s, 30 * s},
		{1800 * s, 1800 * s, 90 * s}, // 5% = 90 s exactly
		{1800 * s, 89 * s, 89 * s},
		{1800 * s, 91 * s, 90 * s},
		{3600 * s, 3600 * s, 180 * s}, // 5% = 180 s
		{3600 * s, 179 * s, 179 * s},
		{3600 * s, 181 * s, 180 * s},
		{7200 * s, 7200 * s, 360 * s},
		{8 * 3600 * s, 8 * 3600 * s, 1440 * s}, // 5% of 8 h = 24 min
		{8 * 3600 * s, 1439 * s, 1439 * s},
		{8 * 3600 * s, 1441 * s, 1440 * s},
		// 5% above 3600 s (CLT above 20 h): the 3600 s ceiling applies.
		{86400 * s, 86400 * s, 3600 * s},
		{86400 * s, 3599 * s, 3599 * s},
		{86400 * s, 3601 * s, 3600 * s},
		{72000 * s, 72000 * s, 3600 * s}, // 5% = 3600 s exactly
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("clt=%s/rlt=%s", c.clt, c.rlt), func(t *testing.T) {
			if got := ShortenedLifetime(c.rlt, c.clt); got != c.want {
				t.Fatalf("TEK_SLT = %s, want %s", got, c.want)
			}
		})
	}
	for clt := 60 * s; clt <= 8*3600*s; clt += 60 * s {
		for _, rlt := range []time.Duration{clt, clt / 2, 90 * s, clt / 20, 3600 * s} {
			got := ShortenedLifetime(rlt, clt)
			if got > rlt || got > 3600*s || (got < 90*s && got != rlt) {
				t.Fatalf("clt %s rlt %s: TEK_SLT %s breaks a bound", clt, rlt, got)
			}
		}
	}
}

// After a GM removal the re-registration's new TEKs receive at once but
// send only three quarters of the way to the temporary SAs' expiry, after
// every other member has re-registered, with a margin (ReregisterBefore); TEKs the GM already held
// are left alone, and nothing changes once the temporary SAs have expired. Without it a member that re-registered first sent with keys
// the others did not hold yet (issue 13's bench lost packets).
// proves: R2, E2 (issue 13: removal with temporary SAs loses nothing)
func TestHoldSendingAfterRemoval(t *testing.T) {
	now := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	tk := func(spi uint32) sadb.TEK {
		return sadb.TEK{Group: "G", SPI: spi, Installed: now, SendFrom: now, Expires: now.Add(time.Hour)}
	}
	until := now.Add(60 * time.Second) // the temporary SA (SPI 1) expires
	teks := []sadb.TEK{tk(1), tk(2)}
	Hold{Held: map[uint32]bool{1: true}, Until: until}.apply(teks, now)
	want := map[uint32]time.Time{1: now, 2: now.Add(45 * time.Second)}
	for _, x := range teks {
		if !x.SendFrom.Equal(want[x.SPI]) {
			t.Errorf("TEK %d sends from %s, want %s", x.SPI, x.SendFrom, want[x.SPI])
		}
	}
	// Late (the temporary SAs expired), or no hold: nothing held.
	for _, h := range []Hold{{Held: map[uint32]bool{1: true}, Until: until}, {}} {
		teks := []sadb.TEK{tk(4)}
		h.apply(teks, until)
		if !teks[0].SendFrom.Equal(now) {
			t.Errorf("held with %+v at the temporary SAs' expiry: %s", h, teks[0].SendFrom)
		}
	}
}

// proves: R2 (issue 18 F6: after a GM removal the re-registration instants
// spread over the first two thirds of the temporary SAs' life, the last
// third left for retries)
func TestReregisterBeforeSpreadsOverTwoThirds(t *testing.T) {
	now := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	expires := now.Add(ShortenedLifetime(time.Hour, time.Hour)) // 180 s
	lo, hi := expires, now
	for i := range 1000 {
		at := ReregisterBefore(expires, now, float64(i)/1000)
		lo, hi = minTime(lo, at), maxTime(hi, at)
	}
	if lo.Before(now) || hi.After(expires.Add(-60*time.Second)) || hi.Sub(lo) < 119*time.Second {
		t.Fatalf("re-registrations in [%s, %s] after the removal, want spread over [0s, 120s]", lo.Sub(now), hi.Sub(now))
	}
	if at := ReregisterBefore(now, now.Add(time.Second), 0.5); !at.Equal(now.Add(time.Second)) {
		t.Fatalf("keys already expired: re-register at %s, want now", at)
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// proves: R2 (issue 18 F6: a member whose re-registration after a GM
// removal fails while its temporary SAs are valid retries within what is
// left of them, not after an exponential backoff past their expiry: the
// key server unreachable for 173 s of the 180 s (three phase 1s fail, at
// 75 s, 123 s and 172 s; the exponential backoff put the fourth attempt
// at 180.2 s, past the expiry), the member registers again before the
// temporary SAs run out and holds a valid TEK throughout; the failed
// attempts are counted by reason)
func TestRemovalRetriesBeforeTemporarySAsExpire(t *testing.T) {
	w := registered(t)
	k := w.kss[0]
	w.runFor(time.Minute)
	removeAll(t, w, k, false)
	removedAt, regs := w.now, w.status().Registrations
	expires := w.dp.TEKs()[0].Expires
	k.down = true
	w.run(removedAt.Add(173*time.Second), func() {
		if !w.holdsTEK() {
			t.Fatalf("no TEK at %s (KS down)\n%s", w.now.Sub(removedAt), w.dump())
		}
		st := w.status()
		if next := w.m.Next(); st.Failures > 0 && (st.State == "idle" || st.State == "registered") && next.After(expires) {
			t.Fatalf("after failure %d at %s the next attempt is at %s, after the temporary SAs expire (%s)",
				st.Failures, w.now.Sub(removedAt), next.Sub(removedAt), expires.Sub(removedAt))
		}
	})
	st := w.status()
	if st.Failures == 0 || st.Counters.Failures.Phase1+st.Counters.Failures.TimedOut != st.FailuresTotal {
		t.Fatalf("with the KS down: %d failures, by reason %+v\n%s", st.Failures, st.Counters.Failures, w.dump())
	}
	k.down = false
	w.run(expires.Add(time.Minute), func() {
		if !w.holdsTEK() {
			t.Fatalf("no TEK at %s after the removal (KS back at 173 s, temporary SAs until %s)\n%s",
				w.now.Sub(removedAt), expires.Sub(removedAt), w.dump())
		}
	})
	if st := w.status(); st.Registrations != regs+1 {
		t.Fatalf("did not re-register: %+v", st)
	}
}

// proves: R2, E2 (CI: a GM that registered a second time inside the hold
// after a GM removal re-installed the new TEK with the second
// registration's instant as its sending start and sent at once; members
// that had not re-registered yet dropped its packets as no_sa). The
// removal's re-registration holds the new TEK's sending start; a second
// registration 0.1 s later brings the same TEK and keeps that start.
func TestHoldSurvivesASecondRegistration(t *testing.T) {
	w := registered(t)
	k := w.kss[0]
	w.runFor(time.Minute)
	before := map[uint32]bool{}
	for _, x := range w.dp.TEKs() {
		before[x.SPI] = true
	}
	removeAll(t, w, k, false)
	removedAt, regs := w.now, w.status().Registrations
	registeredAgain := func(n int) {
		t.Helper()
		until := w.now.Add(4 * time.Minute)
		for w.status().Registrations < regs+n && w.now.Before(until) {
			w.runFor(100 * time.Millisecond)
		}
		if got := w.status().Registrations; got != regs+n {
			t.Fatalf("%d registrations after the removal, want %d\n%s", got-regs, n, w.dump())
		}
	}
	held := func() (uint32, time.Time) {
		t.Helper()
		for _, x := range w.dp.TEKs() {
			if !before[x.SPI] {
				return x.SPI, x.SendFrom
			}
		}
		t.Fatalf("no new TEK after the removal's re-registration\n%s", w.dump())
		return 0, time.Time{}
	}
	registeredAgain(1)
	spi, from := held()
	if !from.After(w.now.Add(time.Second)) {
		t.Fatalf("new TEK 0x%08x sends from %s after the removal, at once (registered at %s)",
			spi, from.Sub(removedAt), w.now.Sub(removedAt))
	}
	w.m.Wake(w.now)
	registeredAgain(2)
	spi2, from2 := held()
	if spi2 != spi {
		t.Fatalf("the second registration brought TEK 0x%08x, not 0x%08x: the test needs the same TEK", spi2, spi)
	}
	if !from2.Equal(from) {
		t.Fatalf("a second registration at %s moved the new TEK's sending start from %s to %s",
			w.now.Sub(removedAt), from.Sub(removedAt), from2.Sub(removedAt))
	}
}

// removeAll makes KS k remove every member (`clear crypto gdoi ks
// members`, with temporary SAs, or `... now`) and delivers the removal to
// the member.
func removeAll(t *testing.T, w *world, k *keyServer, now bool) {
	t.Helper()
	p, err := k.srv.Remove(group, now, w.now)
	if err != nil {
		t.Fatal(err)
	}
	k.rekeys = append(k.rekeys, p)
	w.push(k.addr, p.Data)
}

// installs records the sending start of every TEK installed in it.
type installs struct {
	*sadb.Memory
	sendFrom map[uint32][]time.Time
}

func (d *installs) InstallTEK(t sadb.TEK) error {
	d.sendFrom[t.SPI] = append(d.sendFrom[t.SPI], t.SendFrom)
	return d.Memory.InstallTEK(t)
}

// proves: R2 (CI: a member whose registration after a GM removal was being
// installed sent one packet with the new TEK before its hold was set, and
// a member not yet re-registered dropped it as no_sa) — the hold is set
// before the TEK is installed: the data plane never holds the new TEK
// with an earlier sending start, not for an instant.
func TestHoldSetBeforeInstall(t *testing.T) {
	d := &installs{Memory: sadb.NewMemory(), sendFrom: map[uint32][]time.Time{}}
	until := now.Add(60 * time.Second)
	inst, err := InstallHolding(d, d, "G", 1, result(36, true), Hold{Held: map[uint32]bool{}, Until: until}, now)
	if err != nil {
		t.Fatal(err)
	}
	spi := inst.TEKs[0].SPI
	if got := d.sendFrom[spi]; len(got) != 1 || !got[0].Equal(now.Add(45*time.Second)) {
		t.Fatalf("TEK 0x%x installed with sending starts %v, want one, %s", spi, got, now.Add(45*time.Second))
	}
}

// proves: R2 — through a member's own registration after a GM removal
// (not InstallHolding alone): every sending start the data plane is given
// for the registration's new TEK is the hold's, none earlier, so there is
// no instant at which the engine could send with it (the member installed
// it first and held it after; CI lost a packet in between).
func TestRemovalReregistrationNeverSendsEarly(t *testing.T) {
	w := registered(t)
	k := w.kss[0]
	w.runFor(time.Minute)
	before := map[uint32]bool{}
	for _, x := range w.dp.TEKs() {
		before[x.SPI] = true
	}
	rec := &installs{Memory: w.dp, sendFrom: map[uint32][]time.Time{}}
	w.m.o.Dataplane = rec
	removeAll(t, w, k, false)
	regs := w.status().Registrations
	for w.status().Registrations == regs && w.now.Before(t0.Add(10*time.Minute)) {
		w.runFor(100 * time.Millisecond)
	}
	registeredAt := w.now
	newTEKs := 0
	for spi, starts := range rec.sendFrom {
		if before[spi] {
			continue
		}
		newTEKs++
		for _, at := range starts {
			if !at.After(registeredAt.Add(time.Second)) {
				t.Fatalf("new TEK 0x%08x given the sending start %s, the registration at %s: %v", spi, at, registeredAt, starts)
			}
		}
	}
	if newTEKs == 0 {
		t.Fatalf("no new TEK installed by the re-registration\n%s", w.dump())
	}
}
