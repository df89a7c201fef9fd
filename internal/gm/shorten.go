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

// ReregisterBefore picks a re-registration instant before expires when
// little time is left: the usual jitter window, but at most a third of
// what remains, so the GM always registers before its keys run out.
func ReregisterBefore(expires, now time.Time, configured time.Duration, u float64) time.Time {
	w := min(jitterWindow(configured), expires.Sub(now)/3)
	return expires.Add(-w - time.Duration(u*float64(w)))
}

// HoldSending delays sending with the TEKs of group that a registration
// just brought (those not in held) while the GM still holds temporary SAs
// after a GM removal (SPEC R2): the new TEKs start sending three quarters
// of the way from now to until (the temporary SAs' earliest expiry). The
// other members hold only the temporary SAs until they re-register
// themselves, each between until-2w and until-w (ReregisterBefore, w at
// most a third of the remaining lifetime); sending with the new keys at
// once would be lost at every member that has not yet. This GM registered
// no earlier than until-2w, so w >= (until-now)/2 and the last of the
// others registers by now+(until-now)/2: halfway would leave no margin
// for that registration's own round trips (the bench lost a packet so),
// three quarters leaves (until-now)/4, at least w/4. Receiving with them
// starts at once.
func HoldSending(dp sadb.Dataplane, group string, held map[uint32]bool, until, now time.Time) {
	if !now.Before(until) {
		return
	}
	from := now.Add(until.Sub(now) * 3 / 4)
	for _, t := range dp.TEKs() {
		if t.Group != group || held[t.SPI] || !t.SendFrom.Before(from) {
			continue
		}
		t.SendFrom = from
		dp.InstallTEK(t)
	}
}
