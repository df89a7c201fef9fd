package store_test

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/store"
)

// BenchmarkSaveGroupStorm is the KS's periodic save during a registration
// storm (issue 18): each save a delta of 1,000 new members (addresses in
// sequence, as loadgen's 127.64.0.1 and up), into a group that grows to
// 60,000. An operation is one member saved.
func BenchmarkSaveGroupStorm(b *testing.B) {
	const perSave, upTo = 1000, 60000
	dirs := benchDirs(b)
	dir := dirs["tmpfs"]
	if dir == "" {
		dir = dirs["disk"]
	}
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	var st *store.Store
	n := 0
	open := func() {
		if st != nil {
			st.Close()
		}
		var err error
		st, err = store.Open(filepath.Join(dir, "storm-"+time.Now().Format("150405.000000000")+".db"), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := st.SaveGroup(&store.GroupState{Name: "G", ID: 7, UpdatedAt: now}); err != nil {
			b.Fatal(err)
		}
		n = 0
	}
	open()
	defer func() { st.Close() }()
	b.ReportAllocs()
	all := make([]store.MemberState, upTo)
	for i := range all {
		a := netip.AddrFrom4([4]byte{127, 64, byte(i >> 8), byte(i)}).Next()
		all[i] = store.MemberState{Address: a, Identity: "gm-" + a.String(), Version: "1.0.1",
			Registered: now, LastRegister: now, Registrations: 1, Port: 848}
	}
	gs := &store.GroupState{Name: "G", ID: 7, UpdatedAt: now, Delta: true}
	for b.Loop() {
		if n++; n%perSave != 0 {
			continue
		}
		gs.Members = all[n-perSave : n]
		if err := st.SaveGroup(gs); err != nil {
			b.Fatal(err)
		}
		if n >= upTo {
			b.StopTimer()
			open()
			b.StartTimer()
		}
	}
}
