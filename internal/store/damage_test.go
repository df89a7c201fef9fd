package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// refused opens path, expects an error matching want that names the file,
// and checks that the file is byte for byte what it was and that Open
// left nothing else in the directory.
func refused(t *testing.T, path string, want error, mention ...string) error {
	t.Helper()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dirBefore, _ := os.ReadDir(filepath.Dir(path))
	s, err := Open(path, Options{LockTimeout: 500 * time.Millisecond})
	if err == nil {
		s.Close()
		t.Fatalf("Open succeeded")
	}
	if !errors.Is(err, want) {
		t.Fatalf("Open: %v; want %v", err, want)
	}
	for _, m := range append([]string{path}, mention...) {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
	t.Logf("%d bytes: %v", len(before), err)
	after, err2 := os.ReadFile(path)
	if err2 != nil || !bytes.Equal(before, after) {
		t.Fatalf("the file changed (%d -> %d bytes, %v)", len(before), len(after), err2)
	}
	if dirAfter, _ := os.ReadDir(filepath.Dir(path)); len(dirAfter) != len(dirBefore) {
		t.Errorf("directory had %d entries, now %d", len(dirBefore), len(dirAfter))
	}
	return err
}

var damagedHints = []string{"NOT replaced", "backup", "move it aside"}

// bigStore writes a store with enough groups and members to span many
// pages, and returns its bytes and the size bbolt needs (the high-water
// mark).
func bigStore(t *testing.T, path string) ([]byte, int64) {
	t.Helper()
	s := mustOpen(t, path)
	for i := range 40 {
		g := fullGroup(fmt.Sprintf("GROUP-%02d", i), uint32(i))
		for j := range 30 {
			g.Members = append(g.Members, MemberState{Address: netip.AddrFrom4([4]byte{10, byte(i), byte(j), 1}),
				Identity: strings.Repeat("x", 40), Registered: t0, LastRegister: t0, Registrations: j})
		}
		if err := s.SaveGroup(g); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var hwm int64
	db.View(func(tx *bolt.Tx) error { hwm = tx.Size(); return nil })
	db.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b, hwm
}

// proves: O4
func TestDamagedStoreRefused(t *testing.T) {
	dir := t.TempDir()
	valid, hwm := bigStore(t, filepath.Join(dir, "valid.db"))
	if hwm < 8*4096 {
		t.Fatalf("test store too small: %d bytes", hwm)
	}
	// The valid store opens.
	mustOpen(t, filepath.Join(dir, "valid.db")).Close()

	write := func(name string, b []byte) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("random", func(t *testing.T) {
		for _, n := range []int{1, 100, 4096, 8192, 65536} {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(rand.Uint32())
			}
			refused(t, write("random.db", b), ErrDamaged, damagedHints...)
		}
	})
	t.Run("empty", func(t *testing.T) {
		refused(t, write("empty.db", nil), ErrDamaged, "empty")
	})
	t.Run("truncated", func(t *testing.T) {
		for _, n := range []int64{100, 4096, 2 * 4096, 2*4096 + 100, 3 * 4096, hwm / 2, hwm - 4096, hwm - 1} {
			refused(t, write("truncated.db", valid[:n]), ErrDamaged, damagedHints...)
		}
	})
	t.Run("flipped", func(t *testing.T) {
		// Garbage over the data pages (the meta pages stay valid).
		b := bytes.Clone(valid)
		for i := 2 * 4096; i < int(hwm); i++ {
			b[i] ^= byte(rand.Uint32()) | 1
		}
		refused(t, write("flipped.db", b), ErrDamaged, damagedHints...)
	})
	t.Run("foreign bbolt", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "foreign.db")
		db, err := bolt.Open(p, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		db.Update(func(tx *bolt.Tx) error {
			b, _ := tx.CreateBucket([]byte("etcd"))
			return b.Put([]byte("k"), []byte("v"))
		})
		db.Close()
		refused(t, p, ErrDamaged, append([]string{"meta bucket"}, damagedHints...)...)
	})
	t.Run("bad record", func(t *testing.T) {
		p := write("badrecord.db", valid)
		poke(t, p, func(tx *bolt.Tx) error {
			return tx.Bucket(bucketGroups).Bucket([]byte("GROUP-07")).Bucket(bucketMembers).Put([]byte("10.7.3.1"), []byte("{not json"))
		})
		refused(t, p, ErrDamaged, append([]string{"GROUP-07", "10.7.3.1"}, damagedHints...)...)
	})
	t.Run("newer format", func(t *testing.T) {
		p := write("newer.db", valid)
		poke(t, p, func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keyFormat, binary.BigEndian.AppendUint32(nil, 99))
		})
		refused(t, p, ErrNewerFormat, "format version 99", fmt.Sprintf("format version %d", FormatVersion))
	})
}

// poke changes a store behind the package's back.
func poke(t *testing.T, path string, f func(*bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(f); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// proves: O4
func TestLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ks.db")
	s := mustOpen(t, path)
	const timeout = 300 * time.Millisecond
	start := time.Now()
	_, err := Open(path, Options{LockTimeout: timeout})
	took := time.Since(start)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	for _, m := range []string{path, "isakmpd"} {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
	if took > timeout+2*time.Second {
		t.Errorf("second Open took %v with a %v timeout", took, timeout)
	}
	t.Log(err)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, path).Close()
}
