package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// record is one stored record: where it is and its stored bytes.
type record struct {
	l     loc
	value []byte
}

// records lists every sealed record of the store at path.
func records(t *testing.T, path string) []record {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []record
	db.View(func(tx *bolt.Tx) error {
		groups := tx.Bucket(bucketGroups)
		groups.ForEach(func(name, _ []byte) error {
			b := groups.Bucket(name)
			name = bytes.Clone(name)
			for _, k := range [][]byte{keyState, keyReserved} {
				out = append(out, record{groupLoc(name, k), bytes.Clone(b.Get(k))})
			}
			return b.Bucket(bucketMembers).ForEach(func(k, v []byte) error {
				out = append(out, record{memberLoc(name, bytes.Clone(k)), bytes.Clone(v)})
				return nil
			})
		})
		return tx.Bucket(bucketSeqFloor).ForEach(func(k, v []byte) error {
			out = append(out, record{loc{bucketSeqFloor, bytes.Clone(k)}, bytes.Clone(v)})
			return nil
		})
	})
	return out
}

// integrityStore writes a store with a full group, an empty one and the
// sequence mark of a deleted one, and returns what it loads.
func integrityStore(t testing.TB, path string) map[string]*GroupState {
	t.Helper()
	s := mustOpen(t, path)
	for _, g := range []*GroupState{fullGroup("GETVPN", 1234), {Name: "EMPTY", ID: 7, SeqReserved: 9}, {Name: "GONE", ID: 8, SeqReserved: 77}} {
		if err := s.SaveGroup(g); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteGroup("GONE"); err != nil {
		t.Fatal(err)
	}
	want := load(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return want
}

// proves: O4, T1 (issue 11 item 10) — every byte of every stored record
// (group state, sequence mark, member, mark of a deleted group) flipped in
// turn, in the file itself: the store is refused as damaged, naming the
// record, and no altered value is ever loaded. Before the records were
// sealed, flips inside a JSON value or a sequence mark loaded altered
// values.
func TestEveryByteFlipOfARecordIsRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ks.db")
	want := integrityStore(t, path)
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs := records(t, path)
	kinds := map[string]bool{}
	damagedPath := filepath.Join(dir, "damaged.db")
	flips := 0
	for _, r := range recs {
		kinds[string(r.l[0])+"/"+string(r.l[len(r.l)-1])] = true
		at := bytes.Index(file, r.value)
		if at < 0 || bytes.Count(file, r.value) != 1 {
			t.Fatalf("record %s is not stored once, contiguously, in the file", r.l)
		}
		for i := range r.value {
			b := bytes.Clone(file)
			b[at+i] ^= 0xff
			if err := os.WriteFile(damagedPath, b, 0o600); err != nil {
				t.Fatal(err)
			}
			flips++
			s, err := Open(damagedPath, Options{})
			if err == nil {
				got, lerr := s.LoadGroups()
				s.Close()
				m := map[string]*GroupState{}
				for _, g := range got {
					m[g.Name] = g
				}
				if lerr != nil || !reflect.DeepEqual(m, want) {
					t.Fatalf("record %s, octet %d flipped: the store opened and loaded altered values (%v)", r.l, i, lerr)
				}
				t.Fatalf("record %s, octet %d flipped: the store opened", r.l, i)
			}
			if !errors.Is(err, ErrDamaged) || !errors.Is(err, ErrIntegrity) {
				t.Fatalf("record %s, octet %d flipped: %v; want ErrDamaged and ErrIntegrity", r.l, i, err)
			}
			if name := string(r.l[len(r.l)-1]); r.l[0][0] == 'g' && !strings.Contains(err.Error(), string(r.l[1])) {
				t.Fatalf("record %s (%s): the error does not name the group: %v", r.l, name, err)
			}
		}
	}
	for _, k := range []string{"groups/state", "groups/reserved", "groups/127.0.2.1", "seqfloor/GONE"} {
		if !kinds[k] {
			t.Errorf("no %s record was damaged (%v)", k, kinds)
		}
	}
	t.Logf("%d records, %d single-octet flips, all refused", len(recs), flips)
}

// proves: O4, T1 (issue 11 item 10) — a record damaged under the running
// KS (the file changed while it is open) is refused when read and counted:
// ReserveSeq never hands out numbers from an altered mark.
func TestIntegrityFailureAtRunTimeRefusedAndCounted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ks.db")
	integrityStore(t, path)
	var mark record
	for _, r := range records(t, path) {
		if string(r.l[1]) == "GETVPN" && string(r.l[len(r.l)-1]) == "reserved" {
			mark = r
		}
	}
	s := mustOpen(t, path)
	defer s.Close()
	file, _ := os.ReadFile(path)
	at := bytes.Index(file, mark.value)
	if at < 0 {
		t.Fatal("the sequence mark is not in the file")
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The mark 100 becomes 0x64 ^ 0x40 = 36: lower, the worst damage.
	if _, err := f.WriteAt([]byte{mark.value[3] ^ 0x40}, int64(at+3)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, _, err := s.ReserveSeq("GETVPN", 10); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("ReserveSeq over a damaged mark: %v, want ErrIntegrity", err)
	}
	if _, err := s.LoadGroups(); !errors.Is(err, ErrIntegrity) || !strings.Contains(err.Error(), "GETVPN") {
		t.Fatalf("LoadGroups over a damaged mark: %v", err)
	}
	if n := s.IntegrityFailures(); n != 2 {
		t.Fatalf("IntegrityFailures = %d, want 2", n)
	}
}

// proves: O4 (issue 11 item 10) — a store written by the previous format
// (1, records without seals) is read and upgraded in place: everything
// loads as it was, the records are sealed, and the upgraded file opens.
func TestUpgradeFromFormat1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ks.db")
	g := fullGroup("GETVPN", 1234)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, _ := tx.CreateBucket(bucketMeta)
		meta.Put(keyMagic, []byte(magic))
		meta.Put(keyFormat, binary.BigEndian.AppendUint32(nil, 1))
		groups, _ := tx.CreateBucket(bucketGroups)
		b, _ := groups.CreateBucket([]byte(g.Name))
		state, _ := json.Marshal(groupRecord{Name: g.Name, ID: g.ID, SigningKey: g.SigningKey, KEK: g.KEK, TEKs: g.TEKs, Seq: g.Seq, UpdatedAt: g.UpdatedAt})
		b.Put(keyState, state)
		b.Put(keyReserved, binary.BigEndian.AppendUint32(nil, g.SeqReserved))
		mb, _ := b.CreateBucket(bucketMembers)
		for _, m := range g.Members {
			v, _ := json.Marshal(m)
			mb.Put([]byte(m.Address.String()), v)
		}
		floor, _ := tx.CreateBucket(bucketSeqFloor)
		return floor.Put([]byte("GONE"), binary.BigEndian.AppendUint32(nil, 500))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	s := mustOpen(t, path)
	if got := load(t, s)["GETVPN"]; !reflect.DeepEqual(got, g) {
		t.Fatalf("format 1 group:\n got %#v\nwant %#v", got, g)
	}
	s.Close()
	for _, r := range records(t, path) {
		if _, err := unseal(r.l, r.value); err != nil {
			t.Fatalf("record %s not sealed after the upgrade: %v", r.l, err)
		}
	}
	s = mustOpen(t, path)
	defer s.Close()
	if got := load(t, s)["GETVPN"]; !reflect.DeepEqual(got, g) {
		t.Fatalf("after the upgrade:\n got %#v\nwant %#v", got, g)
	}
	// The deleted group's mark survived the upgrade.
	if err := s.SaveGroup(&GroupState{Name: "GONE", ID: 9}); err != nil {
		t.Fatal(err)
	}
	if got := load(t, s)["GONE"]; got.SeqReserved != 500 {
		t.Fatalf("mark of the deleted group after the upgrade: %d, want 500", got.SeqReserved)
	}
}

// FuzzStoreRecord: no stored record value panics the decoders; a value
// accepted is exactly the sealed form of its payload at its location (so
// no altered value loads), and what decodes re-encodes to a record that
// decodes the same.
//
// proves: O4 (issue 11 deliver: fuzz target for the stored KS records)
func FuzzStoreRecord(f *testing.F) {
	g := fullGroup("GETVPN", 1234)
	state, _ := json.Marshal(groupRecord{Name: g.Name, ID: g.ID, SigningKey: g.SigningKey, KEK: g.KEK, TEKs: g.TEKs, Seq: g.Seq, UpdatedAt: g.UpdatedAt})
	name := []byte(g.Name)
	f.Add(byte(0), name, seal(groupLoc(name, keyState), state))
	f.Add(byte(1), name, seal(groupLoc(name, keyReserved), []byte{0, 0, 0, 100}))
	for _, m := range g.Members {
		v, _ := json.Marshal(m)
		addr := []byte(m.Address.String())
		f.Add(byte(2), addr, seal(memberLoc(name, addr), v))
		f.Add(byte(2|4), addr, v) // format 1
	}
	f.Add(byte(0), name, state)   // unsealed in format 2: refused
	f.Add(byte(0|4), name, state) // format 1
	f.Add(byte(1), name, []byte{0xff})
	f.Fuzz(func(t *testing.T, kind byte, key, value []byte) {
		format := uint32(2)
		if kind&4 != 0 {
			format = 1
		}
		r := reader{format: format}
		var l loc
		switch kind % 4 {
		case 0, 1:
			l = groupLoc(name, [][]byte{keyState, keyReserved}[kind%2])
		default:
			l = memberLoc(name, key)
		}
		p, err := r.open(l, value)
		if err != nil {
			if !errors.Is(err, ErrIntegrity) {
				t.Fatalf("open: %v is not ErrIntegrity", err)
			}
			return
		}
		if format == 2 && !bytes.Equal(seal(l, p), value) {
			t.Fatal("an accepted value is not the seal of its payload")
		}
		switch kind % 4 {
		case 0:
			rec, err := decodeState(string(name), p)
			if err != nil {
				return
			}
			again, err := json.Marshal(rec)
			if err != nil {
				t.Fatalf("a decoded state does not encode: %v", err)
			}
			rec2, err := decodeState(string(name), again)
			if err != nil || !reflect.DeepEqual(rec, rec2) {
				t.Fatalf("state does not round-trip: %v", err)
			}
		case 1:
			decodeU32(keyReserved, p)
		default:
			m, err := decodeMember(key, p)
			if err != nil {
				return
			}
			again, _ := json.Marshal(m)
			m2, err := decodeMember(key, again)
			if err != nil || !reflect.DeepEqual(m, m2) {
				t.Fatalf("member does not round-trip: %v", err)
			}
		}
	})
}

// pageOf returns the offsets of the pages of a bbolt file whose type is
// flags.
func pagesOf(b []byte, flags uint16) []int {
	var out []int
	for off := 2 * 4096; off+16 <= len(b); off += 4096 {
		if binary.LittleEndian.Uint16(b[off+8:]) == flags && binary.LittleEndian.Uint64(b[off:]) == uint64(off/4096) {
			out = append(out, off)
		}
	}
	return out
}

// proves: O4 (issue 11 item 10) — a branch page whose child points back at
// itself (a cycle) is refused as damaged; bbolt alone descends it forever
// (its consistency check overflows the stack, which kills the process).
// So do a child out of range and an element count past its page.
func TestDamagedPageGraphRefused(t *testing.T) {
	dir := t.TempDir()
	valid, _ := bigStore(t, filepath.Join(dir, "valid.db"))
	branches := pagesOf(valid, 0x01)
	if len(branches) == 0 {
		t.Fatal("the test store has no branch page")
	}
	for _, c := range []struct {
		what, mention string
		damage        func(b []byte, off int)
	}{
		{"cycle", "referenced twice", func(b []byte, off int) { binary.LittleEndian.PutUint64(b[off+16+8:], uint64(off/4096)) }},
		{"child out of range", "out of range", func(b []byte, off int) { binary.LittleEndian.PutUint64(b[off+16+8:], 1<<40) }},
		{"count past the page", "more than fit", func(b []byte, off int) { binary.LittleEndian.PutUint16(b[off+10:], 0xfff0) }},
	} {
		t.Run(c.what, func(t *testing.T) {
			b := bytes.Clone(valid)
			c.damage(b, branches[0])
			p := filepath.Join(t.TempDir(), "damaged.db")
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			refused(t, p, ErrDamaged, append([]string{c.mention}, damagedHints...)...)
		})
	}
	// A torn meta page 0 (a crash while bbolt wrote it) is not damage:
	// page 1 is in force.
	b := bytes.Clone(valid)
	b[16+60] ^= 0xff // the checksum of meta page 0
	p := filepath.Join(t.TempDir(), "torn.db")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(p, Options{})
	if err != nil {
		t.Fatalf("a torn meta page 0: %v", err)
	}
	// The state as of the last commit (40 groups) or the one before.
	if gs, err := s.LoadGroups(); err != nil || len(gs) < 39 {
		t.Fatalf("after a torn meta page 0: %d groups, %v", len(gs), err)
	}
	s.Close()
}

// FuzzOpenStore: no state file makes Open panic, hang or crash the
// process; a file it accepts loads; a file it refuses is left as it was.
//
// proves: O4 (issue 11 deliver: fuzz target for the stored KS records)
func FuzzOpenStore(f *testing.F) {
	// A small seed (the fuzzer slows down with the input's size): a store
	// with 512-octet pages, a group with a member and a deleted group's
	// mark, cut to the pages bbolt uses.
	path := filepath.Join(f.TempDir(), "seed.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: 512})
	if err != nil {
		f.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, _ := tx.CreateBucket(bucketMeta)
		meta.Put(keyMagic, []byte(magic))
		meta.Put(keyFormat, binary.BigEndian.AppendUint32(nil, FormatVersion))
		tx.CreateBucket(bucketGroups)
		_, err := tx.CreateBucket(bucketSeqFloor)
		return err
	})
	db.Close()
	if err != nil {
		f.Fatal(err)
	}
	s := mustOpen(f, path)
	g := &GroupState{Name: "G", ID: 1, Seq: 3, SeqReserved: 10, Members: fullGroup("G", 1).Members[:1]}
	if err := s.SaveGroup(g); err != nil {
		f.Fatal(err)
	}
	s.SaveGroup(&GroupState{Name: "D", ID: 2, SeqReserved: 5})
	s.DeleteGroup("D")
	var hwm int64
	s.db.View(func(tx *bolt.Tx) error { hwm = tx.Size(); return nil })
	s.Close()
	seed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	seed = seed[:hwm]
	if s, err := Open(writeTemp(f, seed), Options{}); err != nil {
		f.Fatalf("the seed (%d octets) does not open: %v", len(seed), err)
	} else {
		s.Close()
	}
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "ks.db")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(p, Options{LockTimeout: 50 * time.Millisecond})
		if err != nil {
			if after, _ := os.ReadFile(p); !bytes.Equal(after, b) {
				t.Fatalf("a refused file was changed: %v", err)
			}
			return
		}
		defer s.Close()
		if _, err := s.LoadGroups(); err != nil {
			t.Fatalf("Open accepted a file that does not load: %v", err)
		}
	})
}

func writeTemp(t testing.TB, b []byte) string {
	p := filepath.Join(t.TempDir(), "ks.db")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
