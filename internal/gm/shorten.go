package gm

import (
	"time"

	"github.com/groupvpn/groupvpn/internal/sadb"
)

// ShortenedLifetime is the lifetime a GM leaves an old TEK after a GM
// removal or a policy-replace rekey (seed; SPEC R2, P3):
//
//	TEK_SLT = MIN(TEK_RLT, MAX(90s, MIN(5% of TEK_CLT, 3600s)))
//
// rlt is the TEK's remaining lifetime, clt its configured lifetime.
func ShortenedLifetime(rlt, clt time.Duration) time.Duration {
	return min(rlt, max(90*time.Second, min(clt/20, 3600*time.Second)))
}

// Shorten applies the formula to every TEK of group (the GM-removal and
// policy-replace instructions); keep lists SPIs to leave alone (the new
// SAs of a policy-replace rekey). It returns the earliest new expiry.
func Shorten(dp sadb.Dataplane, group string, keep map[uint32]bool, now time.Time) time.Time {
	var earliest time.Time
	for _, t := range dp.TEKs() {
		if t.Group != group || keep[t.SPI] {
			continue
		}
		slt := ShortenedLifetime(t.Expires.Sub(now), t.Configured)
		t.Expires = now.Add(slt)
		t.Deactivate = time.Time{} // the shortened lifetime governs
		dp.InstallTEK(t)
		if earliest.IsZero() || t.Expires.Before(earliest) {
			earliest = t.Expires
		}
	}
	return earliest
}

// ReregisterBefore picks the re-registration instant after a GM removal
// (SPEC R2): uniformly in the first two thirds of what is left before
// expires, from u in [0,1) (the caller's randomness). The whole group
// re-registers after a removal, so the window is as wide as the temporary
// SAs allow (120 s of the 180 s a 3600 s TEK keeps), not the usual jitter
// window (60 s): at 100,000 members a 60 s window asked 1,700
// registrations a second of the key server and left members without keys
// (issue 18 F6). The last third is for retries (retryWithin) and for
// Hold's margin.
func ReregisterBefore(expires, now time.Time, u float64) time.Time {
	left := expires.Sub(now)
	if left <= 0 {
		return now
	}
	return now.Add(time.Duration(u * float64(left*2/3)))
}

// retryWithin bounds the wait before the next attempt of a member whose
// keys are still valid for left: a third of it (the caller's jitter takes
// it down to a sixth), at least a second, so a failed attempt is retried,
// and retried again, before the keys run out, rather than after an
// exponential backoff past their expiry (issue 18 F6). Keys already
// expired do not bound it.
func retryWithin(left time.Duration) time.Duration {
	if left <= 0 {
		return time.Duration(1<<63 - 1)
	}
	return max(left/3, time.Second)
}

// Hold delays sending with the TEKs a registration brings (those not in
// Held, the group's TEKs before it) while the GM still holds temporary SAs
// after a GM removal (SPEC R2), until is their earliest expiry: the new
// TEKs start sending three quarters of the way from now to until. The
// other members hold only the temporary SAs until they re-register
// themselves, each in the first two thirds of the temporary SAs' life
// (ReregisterBefore: by until-L/3, L their lifetime at the removal);
// sending with the new keys at once would be lost at every member that has
// not yet. This GM registered no earlier than the removal, so it sends from
// until-L/4 at the earliest: after the last of the others registered, with
// a margin of at least L/12 (15 s of 180 s) for that registration's own
// round trips (halfway left none: the bench lost a packet so). Receiving
// with them starts at once. The zero Hold holds nothing.
type Hold struct {
	Held  map[uint32]bool
	Until time.Time
}

// apply sets the sending start of the TEKs of teks that h holds back,
// before they are installed: installed first and held after, a TEK could
// send in between (CI lost a packet as no_sa at a member not yet
// re-registered, sent by one whose registration was being installed).
func (h Hold) apply(teks []sadb.TEK, now time.Time) {
	if h.Until.IsZero() || !now.Before(h.Until) {
		return
	}
	from := now.Add(h.Until.Sub(now) * 3 / 4)
	for i := range teks {
		if !h.Held[teks[i].SPI] && teks[i].SendFrom.Before(from) {
			teks[i].SendFrom = from
		}
	}
}
