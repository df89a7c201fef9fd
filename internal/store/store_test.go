package store

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)

func fullGroup(name string, id uint32) *GroupState {
	g := &GroupState{
		Name:       name,
		ID:         id,
		SigningKey: bytes.Repeat([]byte{0x30, 0x82}, 60),
		KEK: KEKState{SPI: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
			Key: bytes.Repeat([]byte{0xAB}, 32), KeyBits: 128, Expires: t0.Add(24 * time.Hour)},
		TEKs: []TEKState{
			{SPI: 0x1234abcd, Transform: 12, KeyBits: 256, AuthAlg: 5, EncKey: bytes.Repeat([]byte{0xEE}, 32),
				AuthKey: bytes.Repeat([]byte{0xAA}, 32), Proto: 17,
				Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.1.0.0/16"),
				SrcPort: 500, DstPort: 4500, Created: t0, Expires: t0.Add(time.Hour), Lifetime: time.Hour, SIDNext: 7},
			{SPI: 0xfeed0001, Transform: 20, KeyBits: 128, EncKey: bytes.Repeat([]byte{0xCC}, 20),
				Src: netip.MustParsePrefix("2001:db8::/32"), Dst: netip.MustParsePrefix("::/0"),
				Created: t0, Expires: t0.Add(2 * time.Hour), Lifetime: 2 * time.Hour, SIDNext: 1, SIDBits: 17, SIDReserved: 1025, SIDFloor: 30050},
		},
		Seq:         41,
		SeqReserved: 100,
		Members: []MemberState{
			{Address: netip.MustParseAddr("127.0.2.1"), Identity: "CN=gm1", Version: "1.0.3",
				Registered: t0, LastRegister: t0.Add(time.Minute), Registrations: 3, SenderIDs: []uint32{1, 2}, MissedRekeys: 1},
			{Address: netip.MustParseAddr("2001:db8::7"), Identity: "gm7.example", Version: "1.0.1",
				Registered: t0, LastRegister: t0, Registrations: 1},
		},
		UpdatedAt: t0.Add(5 * time.Minute),
	}
	return g
}

func mustOpen(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func load(t testing.TB, s *Store) map[string]*GroupState {
	t.Helper()
	gs, err := s.LoadGroups()
	if err != nil {
		t.Fatalf("LoadGroups: %v", err)
	}
	m := map[string]*GroupState{}
	for _, g := range gs {
		m[g.Name] = g
	}
	return m
}

// proves: O4
func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ks.db")
	s := mustOpen(t, path)
	g := fullGroup("GETVPN", 1234)
	if err := s.SaveGroup(g); err != nil {
		t.Fatal(err)
	}
	other := &GroupState{Name: "EMPTY", ID: 7}
	if err := s.SaveGroup(other); err != nil {
		t.Fatal(err)
	}
	added := MemberState{Address: netip.MustParseAddr("127.0.2.9"), Identity: "CN=gm9", Registered: t0, LastRegister: t0, Registrations: 1, SenderIDs: []uint32{3}}
	if err := s.SaveMember("GETVPN", added); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMember("GETVPN", netip.MustParseAddr("2001:db8::7")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMember("GETVPN", netip.MustParseAddr("192.0.2.99")); err != nil {
		t.Fatalf("deleting an absent member: %v", err)
	}
	if err := s.SaveMember("NOPE", added); !errors.Is(err, ErrNoGroup) {
		t.Fatalf("SaveMember to an unknown group: %v, want ErrNoGroup", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode: %v %v, want 0600", fi.Mode(), err)
	}

	s = mustOpen(t, path)
	defer s.Close()
	got := load(t, s)
	if len(got) != 2 {
		t.Fatalf("loaded %d groups, want 2", len(got))
	}
	want := fullGroup("GETVPN", 1234)
	want.Members = []MemberState{want.Members[0], added} // 127.0.2.1 < 127.0.2.9
	if !reflect.DeepEqual(got["GETVPN"], want) {
		t.Errorf("round trip:\n got %#v\nwant %#v", got["GETVPN"], want)
	}
	if e := got["EMPTY"]; e.ID != 7 || len(e.Members) != 0 || len(e.TEKs) != 0 || e.SigningKey != nil {
		t.Errorf("empty group: %#v", e)
	}

	// SaveGroup replaces the member list.
	want.Members = want.Members[:1]
	if err := s.SaveGroup(want); err != nil {
		t.Fatal(err)
	}
	if m := load(t, s)["GETVPN"].Members; len(m) != 1 || m[0].Address != want.Members[0].Address {
		t.Errorf("members after SaveGroup: %v", m)
	}

	if err := s.DeleteGroup("EMPTY"); err != nil {
		t.Fatal(err)
	}
	if _, ok := load(t, s)["EMPTY"]; ok {
		t.Error("deleted group still loads")
	}
	if err := s.DeleteGroup("EMPTY"); err != nil {
		t.Errorf("deleting an absent group: %v", err)
	}
}

// proves: O4
func TestNoKeysInLogs(t *testing.T) {
	g := fullGroup("G", 1)
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "group", g, "kek", g.KEK, "tek", g.TEKs[0])
	out := buf.String() + fmt.Sprint(g, g.KEK, g.TEKs[0]) + fmt.Sprintf("%v %s", *g, g.TEKs)
	for _, k := range [][]byte{g.SigningKey, g.KEK.Key, g.TEKs[0].EncKey, g.TEKs[0].AuthKey} {
		for _, enc := range []string{base64.StdEncoding.EncodeToString(k), fmt.Sprintf("%x", k), fmt.Sprint(k)} {
			if strings.Contains(out, enc) {
				t.Fatalf("key material in log output: %s", out)
			}
		}
	}
}

// proves: O4
// proves: T1
func TestReserveSeqMonotonic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ks.db")
	s := mustOpen(t, path)
	if _, _, err := s.ReserveSeq("G", 10); !errors.Is(err, ErrNoGroup) {
		t.Fatalf("ReserveSeq on an unsaved group: %v", err)
	}
	if err := s.SaveGroup(&GroupState{Name: "G", ID: 1}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ReserveSeq("G", 0); err == nil {
		t.Fatal("ReserveSeq(0) succeeded")
	}
	var last uint32
	for i, n := range []uint32{10, 1, 100} {
		from, to, err := s.ReserveSeq("G", n)
		if err != nil {
			t.Fatal(err)
		}
		if from != last+1 || to != from+n-1 {
			t.Fatalf("reservation %d: [%d, %d] after %d", i, from, to, last)
		}
		last = to
	}
	for round := 0; round < 3; round++ {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = mustOpen(t, path)
		g := load(t, s)["G"]
		if g.SeqReserved != last {
			t.Fatalf("after reopen: SeqReserved %d, want %d", g.SeqReserved, last)
		}
		// A stale SeqReserved in SaveGroup never lowers the mark.
		g.Seq, g.SeqReserved = last-5, 3
		if err := s.SaveGroup(g); err != nil {
			t.Fatal(err)
		}
		from, to, err := s.ReserveSeq("G", 50)
		if err != nil {
			t.Fatal(err)
		}
		if from != last+1 || to != last+50 {
			t.Fatalf("after reopen: [%d, %d], want [%d, %d]", from, to, last+1, last+50)
		}
		last = to
	}

	// A Seq above the mark (a caller that skipped ReserveSeq) raises it.
	g := load(t, s)["G"]
	g.Seq = last + 1000
	if err := s.SaveGroup(g); err != nil {
		t.Fatal(err)
	}
	last += 1000
	if from, _, _ := s.ReserveSeq("G", 1); from != last+1 {
		t.Fatalf("after Seq %d: reserved from %d", last, from)
	}
	last++

	// Deleting and re-creating the group keeps the mark.
	if err := s.DeleteGroup("G"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, path)
	defer s.Close()
	if err := s.SaveGroup(&GroupState{Name: "G", ID: 1}); err != nil {
		t.Fatal(err)
	}
	if g := load(t, s)["G"]; g.SeqReserved != last {
		t.Fatalf("re-created group: SeqReserved %d, want %d", g.SeqReserved, last)
	}

	// Exhaustion is an error, and leaves the mark alone.
	if err := s.SaveGroup(&GroupState{Name: "H", SeqReserved: 1<<32 - 3}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ReserveSeq("H", 3); err == nil {
		t.Fatal("reservation past 2^32-1 succeeded")
	}
	if from, to, err := s.ReserveSeq("H", 2); err != nil || from != 1<<32-2 || to != 1<<32-1 {
		t.Fatalf("last reservation: [%d, %d] %v", from, to, err)
	}
}

// proves: O4
func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(filepath.Join(dir, "missing", "ks.db"), Options{})
	if err == nil || !strings.Contains(err.Error(), "must exist") {
		t.Errorf("missing directory: %v", err)
	}
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open created the missing directory")
	}
}
