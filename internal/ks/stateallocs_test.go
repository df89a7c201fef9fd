package ks

import (
	"testing"

	"github.com/groupvpn/groupvpn/internal/version"
)

// A periodic save copies the group's state (State) on the KS's loop once
// a second while members change: 20 ms with 100,000 members, three
// quarters of it formatting each member's version with fmt. A group's
// members run a few versions, each formatted once per State now (5 ms);
// what is left per member is its identity's string (the address) and its
// sender IDs.
// proves: O4 (issue 18: the periodic save's copy of 100,000 members)
func TestStateAllocsPerMember(t *testing.T) {
	srv := New(Options{})
	if err := srv.AddGroup(groupConfig(t, RekeyPolicy{Unicast: true}), now); err != nil {
		t.Fatal(err)
	}
	const n = 10_000
	ms := make([]MemberVersion, n)
	for i := range ms {
		ms[i] = MemberVersion{Addr: member(i).Addr(), Version: []version.Version{version.Base, version.Current}[i%2]}
	}
	srv.Inherit("G", ms, 848, now)
	allocs := testing.AllocsPerRun(5, func() {
		if _, err := srv.State("G", now); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("State of %d members: %.2f allocations per member", n, allocs/n)
	if allocs/n > 1.1 {
		t.Errorf("State allocates %.2f times per member (members without sender IDs), want at most 1.1", allocs/n)
	}
	st, _ := srv.State("G", now)
	if st.Members[0].Version != version.Base.String() || st.Members[1].Version != version.Current.String() {
		t.Fatalf("versions %q %q", st.Members[0].Version, st.Members[1].Version)
	}
}
