package loadgen

import (
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
