package gikev2

import (
	"fmt"
	"time"

	"github.com/groupvpn/groupvpn/internal/gm"
	"github.com/groupvpn/groupvpn/internal/sadb"
)

// Applied says what Apply did that the GM role acts on.
type Applied struct {
	// Reregister: the member was excluded (RFC 9838 §2.4.3) or lost every
	// TEK; it registers again, before Until when Until is set (the
	// shortened TEKs' earliest expiry, SPEC R2), else after a random delay
	// (SPEC R4).
	Reregister bool
	Until      time.Time
}

// Apply writes an Update into the GM's SA database as the GDOI member's
// gm.Install and gm.ApplyRekey do: new TEKs (sending from their SendFrom,
// the rekey's GWP_ATD later), the TEKs they replace (same selector) and the
// ones the Deletes name deactivated at Update.Deactivate (GWP_DTD; at once
// when 0), the policy when dp keeps one (sadb.PolicyStore). An exclusion
// without a Delete of the TEKs shortens the group's TEKs with TEK_SLT
// (gm.Shorten, SPEC R2); with one they go at once (SPEC R4).
func Apply(dp sadb.Dataplane, group string, u *Update, now time.Time) (Applied, error) {
	var out Applied
	deactivate := func(t sadb.TEK) error {
		if !u.Deactivate.After(now) {
			return dp.DeleteTEK(group, t.SPI)
		}
		if t.Deactivate.IsZero() || u.Deactivate.Before(t.Deactivate) {
			t.Deactivate = u.Deactivate
			if t.Expires.Before(t.Deactivate) {
				t.Deactivate = t.Expires
			}
			return dp.InstallTEK(t)
		}
		return nil
	}
	isNew := map[uint32]bool{}
	for _, t := range u.TEKs {
		isNew[t.SPI] = true
	}
	deleted := map[uint32]bool{}
	for _, s := range u.DeleteTEKs {
		deleted[s] = true
	}
	for _, old := range dp.TEKs() {
		if old.Group != group || isNew[old.SPI] {
			continue
		}
		replaced := false
		for _, t := range u.TEKs {
			if t.Src == old.Src && t.Dst == old.Dst && t.IPProto == old.IPProto {
				replaced = true
			}
		}
		if u.DeleteAllTEKs || deleted[old.SPI] || (replaced && !u.Registration) {
			if err := deactivate(old); err != nil {
				return out, fmt.Errorf("gikev2: deactivate TEK 0x%08x: %w", old.SPI, err)
			}
		}
	}
	for _, t := range u.TEKs {
		if err := dp.InstallTEK(t); err != nil {
			return out, fmt.Errorf("gikev2: install TEK 0x%08x: %w", t.SPI, err)
		}
	}
	if ps, ok := dp.(sadb.PolicyStore); ok && u.Policy != nil {
		ps.SetPolicy(group, u.Policy)
	}
	if u.Excluded {
		out.Reregister = true
		if !u.DeleteAllTEKs {
			out.Until = gm.Shorten(dp, group, isNew, now)
		}
	}
	return out, nil
}
