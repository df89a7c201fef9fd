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
// every other member has re-registered, with a margin (ReregisterBefore); TEKs the GM already held and other
// groups' are left alone, and nothing changes once the temporary SAs have
// expired. Without it a member that re-registered first sent with keys
// the others did not hold yet (issue 13's bench lost packets).
// proves: R2, E2 (issue 13: removal with temporary SAs loses nothing)
func TestHoldSendingAfterRemoval(t *testing.T) {
	now := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	db := sadb.NewMemory()
	tk := func(group string, spi uint32) sadb.TEK {
		return sadb.TEK{Group: group, SPI: spi, Installed: now, SendFrom: now, Expires: now.Add(time.Hour)}
	}
	for _, x := range []sadb.TEK{tk("G", 1), tk("G", 2), tk("H", 3)} {
		db.InstallTEK(x)
	}
	until := now.Add(60 * time.Second) // the temporary SA (SPI 1) expires
	HoldSending(db, "G", map[uint32]bool{1: true}, until, now)
	want := map[uint32]time.Time{1: now, 2: now.Add(45 * time.Second), 3: now}
	for _, x := range db.TEKs() {
		if !x.SendFrom.Equal(want[x.SPI]) {
			t.Errorf("TEK %d sends from %s, want %s", x.SPI, x.SendFrom, want[x.SPI])
		}
	}
	// Late (the temporary SAs expired): nothing to hold.
	db.InstallTEK(tk("G", 4))
	HoldSending(db, "G", map[uint32]bool{1: true, 2: true}, until, until)
	for _, x := range db.TEKs() {
		if x.SPI == 4 && !x.SendFrom.Equal(now) {
			t.Errorf("held after the temporary SAs expired: %s", x.SendFrom)
		}
	}
}
