package store_test

import (
	"net/netip"
	"os"
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

// BenchmarkSaveGroupStormPages is BenchmarkSaveGroupStorm's pages and
// file: pages written per member saved, file octets per member.
func BenchmarkSaveGroupStormPages(b *testing.B) {
	const perSave, upTo = 1000, 60000
	dir := b.TempDir()
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	path := filepath.Join(dir, "storm.db")
	st, err := store.Open(path, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if err := st.SaveGroup(&store.GroupState{Name: "G", ID: 7, UpdatedAt: now}); err != nil {
		b.Fatal(err)
	}
	gs := &store.GroupState{Name: "G", ID: 7, UpdatedAt: now, Delta: true}
	if b.N > 1 {
		b.Skip("the pages of one storm: run with -benchtime 1x")
	}
	for range 1 {
		for n := 0; n < upTo; n += perSave {
			gs.Members = gs.Members[:0]
			for i := n; i < n+perSave; i++ {
				a := netip.AddrFrom4([4]byte{127, 64, byte(i >> 8), byte(i)}).Next()
				gs.Members = append(gs.Members, store.MemberState{Address: a, Identity: "gm-" + a.String(), Version: "1.0.1",
					Registered: now, LastRegister: now, Registrations: 1, Port: 848})
			}
			if err := st.SaveGroup(gs); err != nil {
				b.Fatal(err)
			}
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(store.PagesWritten(st))/upTo, "pages/member")
	b.ReportMetric(float64(fi.Size())/upTo, "file-B/member")
	// Then the members registering again, in random order, 1,000 a save
	// (a time of another length: records grow and shrink by a few octets).
	pages := store.PagesWritten(st)
	const again = 60000
	for n := 0; n < again; n += perSave {
		gs.Members = gs.Members[:0]
		for i := n; i < n+perSave; i++ {
			j := i * 7919 % upTo
			a := netip.AddrFrom4([4]byte{127, 64, byte(j >> 8), byte(j)}).Next()
			at := now.Add(time.Duration(i)*time.Second + time.Duration(i%1000)*time.Microsecond)
			gs.Members = append(gs.Members, store.MemberState{Address: a, Identity: "gm-" + a.String(), Version: "1.0.1",
				Registered: now, LastRegister: at, Registrations: 2, Port: 848})
		}
		if err := st.SaveGroup(gs); err != nil {
			b.Fatal(err)
		}
	}
	if fi, err = os.Stat(path); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(store.PagesWritten(st)-pages)/again, "again-pages/member")
	b.ReportMetric(float64(fi.Size())/upTo, "again-file-B/member")
}
