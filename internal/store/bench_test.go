package store_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/store"
	"github.com/groupvpn/groupvpn/isakmp"
)

// What the store costs the KS's event loop (issue 15): the periodic save
// after registrations (SaveGroup, every member) and a rekey's write
// before send (ReserveSeq, then SaveGroup), each committed with
// fdatasync, on tmpfs (/dev/shm: the transaction without the disk) and on
// the disk (the test's temporary directory).

func benchDirs(b *testing.B) map[string]string {
	dirs := map[string]string{"disk": b.TempDir()}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "groupvpn-bench")
		if err == nil {
			b.Cleanup(func() { os.RemoveAll(d) })
			dirs["tmpfs"] = d
		}
	}
	return dirs
}

func benchServer(b *testing.B, members int, now time.Time) *ks.Server {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	srv := ks.New(ks.Options{})
	err = srv.AddGroup(ks.GroupConfig{Name: "G", ID: 7, Address: netip.MustParseAddr("192.0.2.1"), SigningKey: key,
		Rekey: ks.RekeyPolicy{Unicast: true},
		TEKs: []ks.TEKPolicy{{Transform: isakmp.ESPAESGCM16, KeyBits: 128, Lifetime: time.Hour,
			Selectors: []ks.Selector{{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8")}}}}}, now)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < members; i++ {
		p := ks.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 848)}
		if _, _, err := srv.Keys(p, isakmp.GroupID(7), 1, now); err != nil {
			b.Fatal(err)
		}
	}
	return srv
}

// BenchmarkSaveGroup is the periodic save a KS makes once a second while
// members register: the whole group, every member, one transaction.
func BenchmarkSaveGroup(b *testing.B) {
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	for _, members := range []int{10, 1000, 10000} {
		srv := benchServer(b, members, now)
		for where, dir := range benchDirs(b) {
			b.Run(fmt.Sprintf("%s/members=%d", where, members), func(b *testing.B) {
				st, err := store.Open(filepath.Join(dir, fmt.Sprintf("save-%d.db", members)), store.Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer st.Close()
				for b.Loop() {
					gs, err := srv.State("G", now)
					if err != nil {
						b.Fatal(err)
					}
					if err := st.SaveGroup(gs); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkRekeyWithStore is what starting one rekey costs the loop:
// the sequence number reserved, the keys made and sealed, the group saved
// (write before send), the first paced burst returned.
func BenchmarkRekeyWithStore(b *testing.B) {
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	for _, members := range []int{10, 1000, 10000} {
		dirs := benchDirs(b)
		dirs["none"] = ""
		for where, dir := range dirs {
			b.Run(fmt.Sprintf("%s/members=%d", where, members), func(b *testing.B) {
				srv := benchServer(b, members, now)
				var kst ks.Store
				if dir != "" {
					st, err := store.Open(filepath.Join(dir, fmt.Sprintf("rekey-%d.db", members)), store.Options{})
					if err != nil {
						b.Fatal(err)
					}
					defer st.Close()
					kst = st
				}
				d := ks.NewDelivery(srv, kst)
				if _, err := d.Restore(now); err != nil {
					b.Fatal(err)
				}
				at := now
				for b.Loop() {
					at = at.Add(time.Second)
					if _, err := d.Rekey("G", at); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSaveGroupOneChanged is the periodic save after one member
// registered again (issue 18): with the Store remembering what it last
// wrote, the cost is a digest per member and one record written, not
// every member encoded, sealed and written.
func BenchmarkSaveGroupOneChanged(b *testing.B) {
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	for _, members := range []int{10000, 60000} { // benchServer's GCM TEK: at most 65,535 sender IDs
		srv := benchServer(b, members, now)
		gs, err := srv.State("G", now)
		if err != nil {
			b.Fatal(err)
		}
		for where, dir := range benchDirs(b) {
			b.Run(fmt.Sprintf("%s/members=%d", where, members), func(b *testing.B) {
				st, err := store.Open(filepath.Join(dir, fmt.Sprintf("one-%d.db", members)), store.Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer st.Close()
				if err := st.SaveGroup(gs); err != nil {
					b.Fatal(err)
				}
				i := 0
				for b.Loop() {
					m := &gs.Members[i%members]
					m.LastRegister = m.LastRegister.Add(time.Second)
					m.Registrations++
					i++
					if err := st.SaveGroup(gs); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSaveGroupRoutine is the KS's periodic save after 10 of the
// group's members registered again (issue 18): whole, as it was (the
// server's State of every member, the store's digest of each to write
// the 10), and delta (ks.Server.DeltaState: the 10 changed members, and
// the store writes them without looking at the others). An operation is
// the state taken and written; the registrations are not timed.
func BenchmarkSaveGroupRoutine(b *testing.B) {
	const changed = 10
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	dirs := benchDirs(b)
	dir := dirs["tmpfs"]
	if dir == "" {
		dir = dirs["disk"]
	}
	for _, members := range []int{10000, 100000} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		srv := ks.New(ks.Options{})
		err = srv.AddGroup(ks.GroupConfig{Name: "G", ID: 7, Address: netip.MustParseAddr("192.0.2.1"), SigningKey: key,
			Rekey: ks.RekeyPolicy{Unicast: true},
			TEKs: []ks.TEKPolicy{{Transform: isakmp.ESPAESCBC, KeyBits: 128, AuthAlg: isakmp.AuthAlgHMACSHA256, Lifetime: time.Hour,
				Selectors: []ks.Selector{{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8")}}}}}, now)
		if err != nil {
			b.Fatal(err)
		}
		peer := func(i int) ks.Peer {
			return ks.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 848)}
		}
		for i := 0; i < members; i++ {
			if _, _, err := srv.Keys(peer(i), isakmp.GroupID(7), 1, now); err != nil {
				b.Fatal(err)
			}
		}
		for _, mode := range []string{"whole", "delta"} {
			b.Run(fmt.Sprintf("%s/members=%d", mode, members), func(b *testing.B) {
				st, err := store.Open(filepath.Join(dir, fmt.Sprintf("routine-%s-%d.db", mode, members)), store.Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer st.Close()
				gs, err := srv.State("G", now)
				if err == nil {
					err = st.SaveGroup(gs)
				}
				if err != nil {
					b.Fatal(err)
				}
				if _, err := srv.DeltaState("G", now); err != nil { // the deltas start here
					b.Fatal(err)
				}
				b.ReportAllocs()
				n := 0
				for b.Loop() {
					b.StopTimer()
					for range changed {
						n++
						if _, _, err := srv.Keys(peer(n*7919%members), isakmp.GroupID(7), 1, now); err != nil {
							b.Fatal(err)
						}
					}
					b.StartTimer()
					state := srv.State
					if mode == "delta" {
						state = srv.DeltaState
					}
					gs, err := state("G", now)
					if err == nil {
						err = st.SaveGroup(gs)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
