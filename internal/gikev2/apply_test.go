package gikev2

import (
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/gm"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/isakmp"
)

func groupTEKs(dp *sadb.Memory) map[uint32]sadb.TEK {
	out := map[uint32]sadb.TEK{}
	for _, t := range dp.TEKs() {
		if t.Group == "G" {
			out[t.SPI] = t
		}
	}
	return out
}

// proves: G2 (issue 17: what G-IKEv2 delivers lands in the GM's SA
// database as sadb values, as GDOI's does: a registration's TEKs and
// policy; a rekey's new TEK sending after GWP_ATD while the one it replaces
// decrypts until GWP_DTD; replace-now deletes the old TEK at once (P4));
// groundwork for R2, R4 (an exclusion shortens the TEKs to TEK_SLT and asks
// for re-registration; removal now deletes them)
func TestApplyToSADB(t *testing.T) {
	srv, gcks, m := registered(t, nil)
	dp := sadb.NewMemory()
	// Register again to get an Update to apply (registered() applied
	// nothing to dp).
	u, _, _, _, _ := register(t, srv, gcks, m)
	if _, err := Apply(dp, "G", u, t0); err != nil {
		t.Fatal(err)
	}
	var err error
	first := groupTEKs(dp)
	if len(first) != 1 || len(dp.Policy("G")) != 1 {
		t.Fatalf("registration: %d TEKs, policy %v", len(first), dp.Policy("G"))
	}
	now := t0.Add(50 * time.Minute)
	p := rekeyAt(t, srv, gcks, now)
	u, err = m.Rekey(p.Data, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(dp, "G", u, now); err != nil {
		t.Fatal(err)
	}
	after := groupTEKs(dp)
	if len(after) != 2 {
		t.Fatalf("%d TEKs after the rekey", len(after))
	}
	for spi, tk := range after {
		if _, old := first[spi]; old {
			if !tk.Deactivate.Equal(now.Add(ks.RekeyDTD)) {
				t.Fatalf("old TEK deactivates at %v", tk.Deactivate)
			}
		} else if !tk.SendFrom.Equal(now.Add(ks.RekeyATD)) {
			t.Fatalf("new TEK sends from %v", tk.SendFrom)
		}
	}
	// Replace-now: the old TEKs go at once.
	at := now.Add(time.Minute)
	if _, err := srv.ReplaceRekey("G", isakmp.ModeNow, at); err != nil {
		t.Fatal(err)
	}
	p, err = gcks.Replace("G", true, at)
	if err != nil {
		t.Fatal(err)
	}
	if u, err = m.Rekey(p.Data, at); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(dp, "G", u, at); err != nil {
		t.Fatal(err)
	}
	if got := groupTEKs(dp); len(got) != len(u.TEKs) {
		t.Fatalf("replace-now left %d TEKs, want the %d new ones", len(got), len(u.TEKs))
	}
	// Removal: the TEKs are shortened to TEK_SLT, the GM re-registers.
	at = at.Add(time.Minute)
	p, err = gcks.Remove("G", false)
	if err != nil {
		t.Fatal(err)
	}
	if u, err = m.Rekey(p.Data, at); err != nil {
		t.Fatal(err)
	}
	a, err := Apply(dp, "G", u, at)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range groupTEKs(dp) {
		if want := at.Add(gm.ShortenedLifetime(time.Hour, time.Hour)); tk.Expires.After(want) {
			t.Fatalf("TEK expires %v, want by %v", tk.Expires, want)
		}
	}
	if !a.Reregister || a.Until.IsZero() {
		t.Fatalf("removal: %+v", a)
	}
	// Removal now: everything goes.
	srv2, gcks2, m2 := registered(t, nil)
	dp2 := sadb.NewMemory()
	u2, _, _, _, _ := register(t, srv2, gcks2, m2)
	Apply(dp2, "G", u2, t0)
	p, _ = gcks2.Remove("G", true)
	if u2, err = m2.Rekey(p.Data, t0); err != nil {
		t.Fatal(err)
	}
	if a, _ := Apply(dp2, "G", u2, t0); !a.Reregister || len(groupTEKs(dp2)) != 0 {
		t.Fatalf("removal now left %d TEKs", len(groupTEKs(dp2)))
	}
}

// proves: G2 (issue 17: a restarted GCKS resumes its Rekey SA's Message IDs
// from what it saved; without it, GMs would drop its rekeys as replays)
func TestResumeMessageIDs(t *testing.T) {
	srv, gcks, m := registered(t, nil)
	now := t0.Add(50 * time.Minute)
	p := rekeyAt(t, srv, gcks, now)
	if _, err := m.Rekey(p.Data, now); err != nil {
		t.Fatal(err)
	}
	saved := gcks.NextMessageIDs()
	if saved["G"] != 1 {
		t.Fatalf("saved %v", saved)
	}
	// A restarted GCKS that forgot: Message ID 0 again, a replay.
	fresh := NewGCKS(srv, nil)
	if _, err := fresh.Rekeyer("G", now); err != nil {
		t.Fatal(err)
	}
	p0 := rekeyAt(t, srv, fresh, now.Add(time.Minute))
	if _, err := m.Rekey(p0.Data, now.Add(time.Minute)); err == nil {
		t.Fatal("a reused Message ID accepted")
	}
	resumed := NewGCKS(srv, nil)
	if err := resumed.Resume("G", saved["G"], now); err != nil {
		t.Fatal(err)
	}
	p1 := rekeyAt(t, srv, resumed, now.Add(2*time.Minute))
	if _, err := m.Rekey(p1.Data, now.Add(2*time.Minute)); err != nil || p1.MessageID != 1 {
		t.Fatalf("resumed Message ID %d: %v", p1.MessageID, err)
	}
}
