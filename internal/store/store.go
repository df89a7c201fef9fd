// Package store keeps the key server's state on disk so that a restarted
// KS loses no group and sends no stale sequence number (SPEC O4, T1).
//
// The state lives in one embedded bbolt database (go.etcd.io/bbolt). Every
// change is one transaction that bbolt commits with fdatasync before the
// call returns, so after a crash (SIGKILL, power loss) the file holds
// either the state before or the state after each call, never a mix.
//
// # Sequence numbers: reserved before send
//
// The sequence number of a GROUPKEY-PUSH must never go back, not even
// across a KS that is killed and restarted (SPEC T1). Every datagram of
// one rekey (each member's copy, each retransmission) carries the same
// number, so the KS writes one number per rekey, not one per message
// (ks.Delivery):
//
//  1. Before it sends a rekey, the KS reserves its number with
//     ReserveSeq(group, 1), which durably raises the group's SeqReserved
//     (the commit is fsync'ed before ReserveSeq returns) and hands it
//     back. It then writes the new keys, the number (GroupState.Seq),
//     the rekey in flight and the members (who carry their sender IDs
//     into the new keys) with SaveGroup, which writes only the members
//     that changed. Only then does it send.
//  2. Between rekeys the KS saves its members (registrations, ACKs) with
//     SaveGroup from a writer off its event loop (internal/node): for the
//     show commands and the next start, not for the sequence numbers.
//     Those saves are deltas (GroupState.Delta: the members changed since
//     the previous one, the others left as stored), whose cost is what
//     changed (issue 18); the writer merges deltas it has not written yet
//     and never drops one, so the stored members are always those of the
//     last save written, as with whole saves. The writes of step 1 and
//     the first save of a group are whole.
//  3. After a restart, LoadGroups reports Seq and SeqReserved, and the KS
//     continues strictly above the larger (its next rekey reserves
//     SeqReserved+1); a rekey that was in flight is resumed with its own
//     number. A number reserved but not used before a crash is skipped,
//     which GMs accept: they only need the numbers to increase.
//
// ReserveSeq(group, n) reserves n numbers in one write, from..to; the KS
// asks for one at a time.
//
// SaveGroup never lowers SeqReserved (it keeps the largest of the stored
// mark, the caller's SeqReserved and the caller's Seq), nor the stored
// state: a SaveGroup or SaveKeys whose Seq is below the stored one writes
// no keys, Seq or rekey in flight (SaveGroup writes its members only), so
// a periodic save of members taken before a rekey may land after that
// rekey's SaveKeys without bringing its older keys back. A SaveKeys of
// the stored Seq without a rekey in flight (a registration's raised
// sender-ID mark) keeps the stored rekey in flight: only SaveGroup ends
// it. And DeleteGroup
// remembers the mark, so a group deleted and configured again under the
// same name also continues above it.
//
// # Startup checks
//
// Open refuses, with an error that names the file, a store it cannot
// trust: a file that is not a bbolt database, a truncated or otherwise
// damaged one, a bbolt database without groupvpn's meta bucket, an empty
// file, and a store written by a newer groupvpn (a newer format version).
// It checks the whole file (a bounded walk of bbolt's page graph, which
// bbolt itself trusts and would descend forever on a cycle; then bbolt's
// consistency check and a decode and integrity check of every record) in a
// read-only open before it opens it for writing, and it never
// replaces, truncates or rewrites such a file: the operator restores a
// backup or moves the file aside. A store that another process holds (bbolt
// takes an exclusive flock) is refused after Options.LockTimeout.
//
// # Key material at rest
//
// The file holds the groups' rekey signing keys, KEKs and TEKs in the
// clear: it is NOT encrypted at rest. Open creates it with mode 0600 and
// tightens an existing file to 0600; keep it on a file system only root
// can read, and protect backups the same way. No key is ever logged: the
// String and LogValue methods of the state types leave keys out, and no
// error message of this package quotes a record.
//
// # Integrity of every record
//
// bbolt checks its page structure but not what a record holds: a flipped
// bit inside a JSON record or a sequence mark still reads back, altered
// (issue 11 item 10: 3 of 400 damaged files loaded altered values). So
// every record is sealed: its value is the payload followed by a 32-octet
// tag, SHA-256 over a domain label, the record's location (its bucket path
// and key, each length-prefixed) and the payload. A record whose tag does
// not match, or that was moved to another key, is refused (ErrIntegrity,
// counted by IntegrityFailures): Open refuses the store (ErrDamaged, with
// the number of such records and the first ones named), and a method that
// reads one fails; an altered value is never loaded.
//
// Why SHA-256 and not CRC-32C or a MAC: the tag guards against damage, not
// against an attacker who can write the file (that attacker can read the
// keys in it, and a MAC key would have to live next to it). CRC-32C
// detects every burst of up to 32 bits but lets 1 in 2^32 random damages
// through; a truncated cryptographic hash lets none through in practice,
// binds the record to its location, and costs nothing next to the fsync
// of each commit (records are small and written rarely).
//
// # Layout (format version 2)
//
//	meta/     magic = "groupvpn-ks-store", format = uint32 big-endian (not sealed)
//	groups/   <group name>/ state    = sealed JSON groupRecord (without members)
//	                       reserved = sealed uint32 big-endian, SeqReserved
//	                       members/ <address> = sealed JSON MemberState
//	seqfloor/ <group name> = sealed uint32 big-endian, SeqReserved of a deleted group
//
// Format version 1 was the same without the seals. Open reads such a store
// (after the same checks) and upgrades it in place to version 2, sealing
// every record, in one transaction: a crash leaves it entirely in one
// format or the other. An older groupvpn refuses the upgraded file
// (ErrNewerFormat).
//
// The record types are ks's (ks.GroupState and the rest, aliased here):
// the key server defines what it must remember, and *Store implements
// ks.Store. The node writes through one writer (node/persist.go): the
// periodic saves of bookkeeping on its goroutine, off the event loop; the
// writes before something is sent (ReserveSeq and a rekey's SaveGroup;
// a registration's raised sender-ID mark with SaveKeys: the keys without
// rewriting the members) synchronously. A SaveKeys does not wait for a
// periodic save in progress: bbolt serializes the two transactions, and
// whichever commits last, the stored state keeps the higher Seq (above).
// bbolt makes concurrent use safe anyway.
package store

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// FormatVersion is the on-disk format this package writes and reads; it
// also reads (and upgrades) format 1.
const FormatVersion uint32 = 2

// DefaultLockTimeout is how long Open waits for another process to release
// the store when Options.LockTimeout is zero.
const DefaultLockTimeout = 2 * time.Second

const magic = "groupvpn-ks-store"

var (
	bucketMeta     = []byte("meta")
	bucketGroups   = []byte("groups")
	bucketSeqFloor = []byte("seqfloor")
	bucketMembers  = []byte("members")
	keyMagic       = []byte("magic")
	keyFormat      = []byte("format")
	keyState       = []byte("state")
	keyReserved    = []byte("reserved")
)

// Errors Open and the methods return, for errors.Is. The messages around
// them name the file and say what to do.
var (
	// ErrLocked: another process (normally another isakmpd) has the store open.
	ErrLocked = errors.New("locked by another process")
	// ErrDamaged: the file is not a groupvpn store, or it is damaged.
	ErrDamaged = errors.New("not a groupvpn key-server store, or is damaged")
	// ErrNewerFormat: the store was written by a newer groupvpn.
	ErrNewerFormat = errors.New("written by a newer groupvpn")
	// ErrNoGroup: the group has not been saved (SaveGroup) to this store.
	ErrNoGroup = errors.New("no such group in the store")
	// ErrIntegrity: a record fails its integrity check (it was damaged or
	// moved); it is never loaded.
	ErrIntegrity = errors.New("the record fails its integrity check (damaged)")
)

// Options configure Open.
type Options struct {
	// LockTimeout bounds how long Open waits while another process holds
	// the store; 0 means DefaultLockTimeout.
	LockTimeout time.Duration
}

// Store is an open key-server state file.
type Store struct {
	db        *bolt.DB
	path      string
	integrity atomic.Uint64 // records refused by their integrity check

	// written remembers, per group, a digest of each member as this Store
	// last committed it (memberDigest), so that a save of the whole group
	// encodes, seals and writes only the members that changed and deletes
	// only those that left (issue 18: rewriting 100,000 members every
	// second while they register was most of the periodic save's cost).
	// A group is absent when unknown (not saved since Open, or changed by
	// SaveMember, DeleteMember, DeleteGroup or a failed save): its next
	// save compares with the stored records instead. A delta save
	// (GroupState.Delta) updates it for the members it wrote.
	memoMu  sync.Mutex
	written map[string]*memberMemo
	seed    maphash.Seed
}

// memberMemo is what a Store remembers of a group's stored members: the
// digests of its last whole save (t), and the changes delta saves made
// since (over), folded into t when they grow to a quarter of it, so that
// a delta costs the members it lists (issue 18) and a whole save still
// skips the unchanged ones.
type memberMemo struct {
	t digestTable
	// over are the changes of members not in t, and of members in t
	// once one was dropped, in the order made (a later change of an
	// address replaces an earlier one); a member in t changed while none
	// was dropped is set in t. A slice, not a map by address: a storm of
	// new members costs an append each, not a map's insertion and a
	// search of t again at the fold (issue 18: the memo was ~15% of the
	// periodic save in a storm).
	over    []memoEntry
	dropped bool // over holds a drop
}

type memoEntry struct {
	addr netip.Addr
	d    uint64
	n    uint32 // its place in over, which a fold's sort keeps among an address's changes
	gone bool
}

// set records a's new digest (a delta wrote it).
func (m *memberMemo) set(a netip.Addr, d uint64) {
	// A storm's new addresses come in order, past the table's last one:
	// no search then.
	if n := len(m.t); n > 0 && !m.t[n-1].addr.Less(a) {
		if i, ok := slices.BinarySearchFunc(m.t, a, cmpDigest); ok {
			m.t[i].d = d
			if !m.dropped {
				return // no earlier change of a in over: only drops go there for addresses in t
			}
		}
	}
	m.over = append(m.over, memoEntry{addr: a, d: d, n: uint32(len(m.over))})
}

// drop records that a is gone (a delta deleted it).
func (m *memberMemo) drop(a netip.Addr) {
	m.over = append(m.over, memoEntry{addr: a, n: uint32(len(m.over)), gone: true})
	m.dropped = true
}

// table is the memo as one table of the stored members' digests.
func (m *memberMemo) table() digestTable {
	if len(m.over) == 0 {
		return m.t
	}
	// The changes sorted by address (in order already in a storm), the
	// last of each address kept, then merged with t (sorted already):
	// a storm of new members folds ~every quarter of the table, and
	// sorting the whole table each time cost more than the merge.
	cmpChange := func(x, y memoEntry) int {
		if c := x.addr.Compare(y.addr); c != 0 {
			return c
		}
		return cmp.Compare(x.n, y.n)
	}
	if !slices.IsSortedFunc(m.over, cmpChange) {
		slices.SortFunc(m.over, cmpChange)
	}
	t := make(digestTable, 0, len(m.t)+len(m.over))
	i := 0
	for j, o := range m.over {
		if j+1 < len(m.over) && m.over[j+1].addr == o.addr {
			continue // a later change of the same address follows
		}
		for i < len(m.t) && m.t[i].addr.Less(o.addr) {
			t = append(t, m.t[i])
			i++
		}
		if i < len(m.t) && m.t[i].addr == o.addr {
			i++ // replaced or gone
		}
		if !o.gone {
			t = append(t, memberDigestOf{o.addr, o.d})
		}
	}
	t = append(t, m.t[i:]...)
	m.t, m.over, m.dropped = t, nil, false
	return t
}

// memberDigestOf is one member's digest in a digestTable.
type memberDigestOf struct {
	addr netip.Addr
	d    uint64
}

// digestTable is the digests of a group's members, sorted by address: 32
// octets a member, where a map of them took about twice that (issue 18:
// the KS's memory per member).
type digestTable []memberDigestOf

func cmpDigest(e memberDigestOf, a netip.Addr) int { return e.addr.Compare(a) }

// find is the digest of the member at a.
func (t digestTable) find(a netip.Addr) (uint64, bool) {
	i, ok := slices.BinarySearchFunc(t, a, cmpDigest)
	if !ok {
		return 0, false
	}
	return t[i].d, true
}

// digestsOf is the table of g's members with their digests.
func digestsOf(g *GroupState, digests []uint64) digestTable {
	t := make(digestTable, len(g.Members))
	for i := range g.Members {
		t[i] = memberDigestOf{g.Members[i].Address, digests[i]}
	}
	slices.SortFunc(t, func(x, y memberDigestOf) int { return x.addr.Compare(y.addr) })
	return t
}

// IntegrityFailures counts the records refused since Open because they
// fail their integrity check (damaged after Open, under the running KS).
func (s *Store) IntegrityFailures() uint64 { return s.integrity.Load() }

// The records a Store keeps are ks's: the key server defines what it
// must remember (ks.Store is the interface this package implements).
type (
	GroupState  = ks.GroupState
	PushState   = ks.PushState
	KEKState    = ks.KEKState
	TEKState    = ks.TEKState
	MemberState = ks.MemberState
)

// groupRecord is the "state" value of a group: GroupState without its
// members (one record each) and SeqReserved (its own key, so that
// ReserveSeq writes four bytes).
type groupRecord struct {
	Name       string     `json:"name"`
	ID         uint32     `json:"id"`
	SigningKey []byte     `json:"signing_key,omitempty"`
	KEK        KEKState   `json:"kek"`
	TEKs       []TEKState `json:"teks"`
	Seq        uint32     `json:"seq"`
	UpdatedAt  time.Time  `json:"updated_at"`
	InFlight   *PushState `json:"in_flight,omitempty"`
	PTStart    *time.Time `json:"pseudotime_start,omitempty"`
}

// Open opens the store at path, or creates it (mode 0600) when no file
// exists there; the parent directory must exist. It refuses a file it
// cannot trust (ErrDamaged, ErrNewerFormat) without changing it, and a
// store another process holds (ErrLocked) once opts.LockTimeout has passed.
func Open(path string, opts Options) (*Store, error) {
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	deadline := time.Now().Add(timeout)

	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := create(path, timeout); err != nil {
			return nil, err
		}
		fi, err = os.Stat(path)
	}
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("store: %s is not a regular file (%s)", path, fi.Mode().Type())
	}
	if fi.Size() == 0 {
		return nil, damaged(path, errors.New("the file is empty"))
	}

	// Check everything read-only first: a read-write open may write.
	if err := check(path, timeout); err != nil {
		return nil, err
	}
	db, err := openBolt(path, &bolt.Options{Timeout: max(time.Until(deadline), 100*time.Millisecond),
		InitialMmapSize: initialMmapSize})
	if errors.Is(err, syscall.ENOMEM) {
		// No room for the map (a limit on address space): map what the
		// file has, as bbolt does by default.
		db, err = openBolt(path, &bolt.Options{Timeout: max(time.Until(deadline), 100*time.Millisecond)})
	}
	if err != nil {
		return nil, openError(path, timeout, err)
	}
	db.AllocSize = allocSize
	s := &Store{db: db, path: path, written: map[string]*memberMemo{}, seed: maphash.MakeSeed()}
	if err := s.upgrade(); err != nil {
		db.Close()
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		_ = os.Chmod(path, 0o600) // keys are in the clear: nobody else reads them
	}
	// Leftovers of a creation that was interrupted; we hold the lock on
	// the real store, so no other process is creating it now.
	if old, err := filepath.Glob(tempPattern(path)); err == nil {
		for _, o := range old {
			_ = os.Remove(o)
		}
	}
	return s, nil
}

// Path is the file the store was opened from.
func (s *Store) Path() string { return s.path }

// Close releases the file and its lock.
func (s *Store) Close() error { return s.db.Close() }

func tempPattern(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".new-*")
}

// create makes a new store: it initializes a temporary file next to path
// and links it into place, so that a file at path is always a complete
// store (a crash during creation leaves at most a temporary file) and a
// store another process created meanwhile is never overwritten.
func create(path string, timeout time.Duration) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".new-*") // mode 0600
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("store: cannot create %s: its directory %s must exist: %w", path, dir, err)
		}
		return fmt.Errorf("store: cannot create %s: %w", path, err)
	}
	name := tmp.Name()
	tmp.Close()
	defer os.Remove(name)
	db, err := bolt.Open(name, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		return fmt.Errorf("store: cannot create %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		if err := meta.Put(keyMagic, []byte(magic)); err != nil {
			return err
		}
		if err := meta.Put(keyFormat, binary.BigEndian.AppendUint32(nil, FormatVersion)); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(bucketGroups); err != nil {
			return err
		}
		_, err = tx.CreateBucket(bucketSeqFloor)
		return err
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: cannot create %s: %w", path, err)
	}
	if err := os.Link(name, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // another process created it first: check and use that one
		}
		return fmt.Errorf("store: cannot create %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		err = d.Sync() // make the new directory entry durable
		d.Close()
		if err != nil {
			return fmt.Errorf("store: cannot create %s: sync %s: %w", path, dir, err)
		}
	}
	return nil
}

// initialMmapSize is the address space the read-write store maps at open.
// bbolt remaps when the file outgrows its mapping, and a remap inside a
// write copies every node the transaction touched out of the old mapping:
// in a registration storm the growing file remapped every few saves
// (~2% of the key server's CPU at 20,000 members). Address space, not
// memory: only the pages the file has are ever touched (~73 MiB at
// 100,000 members). Where the address space is limited and the map
// fails, Open maps what the file has instead.
const initialMmapSize = 1 << 30

// allocSize is how much the file grows by once it must grow. bbolt grows
// a file to its whole map while the map is at most its AllocSize (16 MiB
// by default), then by AllocSize: with the map above, a store of ten
// members would be a 16 MiB file that every start reads whole (check).
// 1 MiB keeps a file within 1 MiB of what it holds, at a file growth
// (ftruncate and fsync, on the writer) per ~1,400 members a storm adds.
const allocSize = 1 << 20

// openBolt opens the database with faults on the mapped file (a truncated
// file makes bbolt touch pages past its end: SIGBUS) and bbolt's panics on
// garbage turned into errors.
func openBolt(path string, o *bolt.Options) (db *bolt.DB, err error) {
	var f *os.File
	o.OpenFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		var err error
		f, err = os.OpenFile(name, flag, perm)
		return f, err
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if f != nil {
				f.Close() // drops the lock; the mapping is lost until exit
			}
			db, err = nil, fmt.Errorf("bbolt: %v", r)
		}
	}()
	return bolt.Open(path, 0o600, o)
}

func openError(path string, timeout time.Duration, err error) error {
	var pe *fs.PathError
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("store: %s is %w (still locked after %v): is another groupvpn isakmpd running with this state file? Stop it first: %w",
			path, ErrLocked, timeout, err)
	case errors.As(err, &pe) && pe.Op == "open":
		return fmt.Errorf("store: cannot read %s: %w", path, err)
	}
	return damaged(path, err)
}

func damaged(path string, cause error) error {
	return fmt.Errorf("store: %s is %w: %w; the file was NOT replaced or modified: "+
		"restore it from a backup, or move it aside to start with an empty store "+
		"(every GM then re-registers and gets new keys)", path, ErrDamaged, cause)
}

// check opens the file read-only and verifies all of it: bbolt's page
// structure, our meta bucket and format version, and every record.
func check(path string, timeout time.Duration) (err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	// Read-only, without the freelist: bbolt reads the meta pages only,
	// and takes the shared lock, so the file holds still for checkPages.
	db, err := openBolt(path, &bolt.Options{ReadOnly: true, Timeout: timeout})
	if err != nil {
		return openError(path, timeout, err)
	}
	defer db.Close()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = damaged(path, fmt.Errorf("bbolt: %v", r))
		}
	}()
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("store: cannot read %s: %w", path, err)
	}
	if err := checkPages(raw); err != nil {
		return damaged(path, err)
	}
	return db.View(func(tx *bolt.Tx) error {
		if tx.Size() > fi.Size() {
			return damaged(path, fmt.Errorf("the file is truncated: %d bytes, the database needs %d", fi.Size(), tx.Size()))
		}
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return damaged(path, errors.New("it has no groupvpn meta bucket"))
		}
		if string(meta.Get(keyMagic)) != magic {
			return damaged(path, errors.New("its meta bucket does not identify a groupvpn store"))
		}
		fv := meta.Get(keyFormat)
		if len(fv) != 4 {
			return damaged(path, errors.New("its format version is unreadable"))
		}
		if v := binary.BigEndian.Uint32(fv); v > FormatVersion {
			return fmt.Errorf("store: %s has format version %d, but this groupvpn reads format version %d and older (%w): "+
				"run the groupvpn that wrote it, or restore a backup made by this version; the file was NOT modified",
				path, v, FormatVersion, ErrNewerFormat)
		} else if v == 0 {
			return damaged(path, errors.New("its format version is 0"))
		}
		floor := tx.Bucket(bucketSeqFloor)
		if floor == nil {
			return damaged(path, errors.New("it has no seqfloor bucket"))
		}
		r := reader{format: binary.BigEndian.Uint32(fv)}
		if _, err := r.loadGroups(tx); err != nil {
			return damaged(path, err)
		}
		if err := r.checkFloor(floor); err != nil {
			return damaged(path, err)
		}
		// Drain the channel: the check runs in its own goroutine on this
		// transaction's pages.
		var first error
		for err := range tx.Check(bolt.WithKVStringer(redacted{})) {
			if first == nil {
				first = err
			}
		}
		if first != nil {
			return damaged(path, fmt.Errorf("bbolt consistency check: %w", first))
		}
		return nil
	})
}

// redacted prints keys (group names, addresses) but not values (keys
// material) in bbolt's consistency-check messages.
type redacted struct{}

func (redacted) KeyToString(k []byte) string   { return fmt.Sprintf("%q", k) }
func (redacted) ValueToString(v []byte) string { return fmt.Sprintf("<%d octets>", len(v)) }

// LoadGroups returns every saved group, by name, with its members by
// address. SeqReserved is the high-water mark a restarted KS must stay
// above.
func (s *Store) LoadGroups() ([]*GroupState, error) {
	var out []*GroupState
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = s.reader().loadGroups(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", s.path, err)
	}
	return out, nil
}

// Sealing (see the package documentation).

const tagSize = sha256.Size

// tagDomain separates groupvpn's record tags from any other SHA-256.
const tagDomain = "groupvpn-ks-store record v2\x00"

// loc is a record's location: its bucket path, then its key.
type loc [][]byte

func (l loc) String() string {
	var parts []string
	for _, p := range l {
		parts = append(parts, fmt.Sprintf("%q", p))
	}
	return strings.Join(parts, "/")
}

func recordTag(l loc, payload []byte) []byte {
	return appendRecordTag(nil, l, payload)
}

// appendRecordTag appends payload's tag at l to b.
func appendRecordTag(b []byte, l loc, payload []byte) []byte {
	h := sha256.New()
	h.Write([]byte(tagDomain))
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(l)))])
	for _, p := range l {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
		h.Write(p)
	}
	h.Write(payload)
	return h.Sum(b)
}

// seal returns the stored form of payload at l.
func seal(l loc, payload []byte) []byte {
	return append(slices.Clip(payload), recordTag(l, payload)...)
}

// sealMember returns m's stored form at l: encodeMember's octets with
// their tag appended in place (encodeMember leaves room for it).
func sealMember(l loc, m *MemberState) ([]byte, error) {
	v, err := encodeMember(m)
	if err != nil {
		return nil, err
	}
	return appendRecordTag(v, l, v), nil
}

// unseal checks the stored value v of the record at l and returns its
// payload, or ErrIntegrity.
func unseal(l loc, v []byte) ([]byte, error) {
	if len(v) < tagSize {
		return nil, fmt.Errorf("%d octets, shorter than its tag: %w", len(v), ErrIntegrity)
	}
	payload, tag := v[:len(v)-tagSize], v[len(v)-tagSize:]
	if !bytes.Equal(tag, recordTag(l, payload)) {
		return nil, ErrIntegrity
	}
	return payload, nil
}

// reader reads records of one format version, counting the ones refused
// by their integrity check.
type reader struct {
	format    uint32
	integrity *atomic.Uint64 // nil: not counted
}

func (s *Store) reader() reader { return reader{format: FormatVersion, integrity: &s.integrity} }

// get returns the payload of the record at l (bucket path, key) in b; nil
// when there is none.
func (r reader) get(b *bolt.Bucket, l loc) ([]byte, error) {
	v := b.Get(l[len(l)-1])
	if v == nil || r.format < 2 {
		return v, nil
	}
	p, err := r.open(l, v)
	return p, err
}

// open unseals a value read at l (format 2 and later), counting a refusal.
func (r reader) open(l loc, v []byte) ([]byte, error) {
	if r.format < 2 {
		return v, nil
	}
	p, err := unseal(l, v)
	if err != nil && r.integrity != nil {
		r.integrity.Add(1)
	}
	return p, err
}

func (r reader) u32(b *bolt.Bucket, l loc) (uint32, error) {
	v, err := r.get(b, l)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", l[len(l)-1], err)
	}
	return decodeU32(l[len(l)-1], v)
}

func decodeU32(key, v []byte) (uint32, error) {
	if len(v) != 4 {
		return 0, fmt.Errorf("%s: %d octets, want 4", key, len(v))
	}
	return binary.BigEndian.Uint32(v), nil
}

// checkFloor decodes every seqfloor record.
func (r reader) checkFloor(floor *bolt.Bucket) error {
	return floor.ForEach(func(k, v []byte) error {
		if v == nil {
			return fmt.Errorf("seqfloor: %q is a bucket", k)
		}
		if _, err := r.u32(floor, loc{bucketSeqFloor, k}); err != nil {
			return fmt.Errorf("seqfloor of group %q: %w", k, err)
		}
		return nil
	})
}

func groupLoc(name []byte, key ...[]byte) loc {
	return append(loc{bucketGroups, name}, key...)
}

func memberLoc(group, addr []byte) loc {
	return loc{bucketGroups, group, bucketMembers, addr}
}

// upgrade seals every record of a format-1 store and marks it format 2,
// in one transaction.
func (s *Store) upgrade() error {
	var format uint32
	s.db.View(func(tx *bolt.Tx) error {
		format = binary.BigEndian.Uint32(tx.Bucket(bucketMeta).Get(keyFormat)) // check verified it
		return nil
	})
	if format >= FormatVersion {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		type rec struct {
			b *bolt.Bucket
			l loc
			v []byte
		}
		var recs []rec
		groups := tx.Bucket(bucketGroups)
		// Keys and values point into the mapping, which the writes below
		// may move: keep copies.
		err := groups.ForEach(func(name, _ []byte) error {
			b := groups.Bucket(name)
			name = bytes.Clone(name)
			for _, k := range [][]byte{keyState, keyReserved} {
				if v := b.Get(k); v != nil {
					recs = append(recs, rec{b, groupLoc(name, k), bytes.Clone(v)})
				}
			}
			mb := b.Bucket(bucketMembers)
			if mb == nil {
				return fmt.Errorf("group %q: no members bucket", name)
			}
			return mb.ForEach(func(addr, v []byte) error {
				recs = append(recs, rec{mb, memberLoc(name, bytes.Clone(addr)), bytes.Clone(v)})
				return nil
			})
		})
		if err != nil {
			return err
		}
		floor := tx.Bucket(bucketSeqFloor)
		err = floor.ForEach(func(k, v []byte) error {
			recs = append(recs, rec{floor, loc{bucketSeqFloor, bytes.Clone(k)}, bytes.Clone(v)})
			return nil
		})
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := r.b.Put(r.l[len(r.l)-1], seal(r.l, r.v)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyFormat, binary.BigEndian.AppendUint32(nil, FormatVersion))
	})
	if err != nil {
		return fmt.Errorf("store: %s: upgrade from format %d to %d: %w", s.path, format, FormatVersion, err)
	}
	return nil
}

// loadGroups decodes every group. Damaged records do not stop it: it
// returns an error that counts them and names the first few.
func (r reader) loadGroups(tx *bolt.Tx) ([]*GroupState, error) {
	groups := tx.Bucket(bucketGroups)
	if groups == nil {
		return nil, errors.New("it has no groups bucket")
	}
	var out []*GroupState
	var errs []error
	err := groups.ForEach(func(k, v []byte) error {
		b := groups.Bucket(k)
		if b == nil {
			return fmt.Errorf("groups: key %q is not a group bucket", k)
		}
		g, gerrs := r.decodeGroup(k, b)
		for _, e := range gerrs {
			errs = append(errs, fmt.Errorf("group %q: %w", k, e))
		}
		if len(gerrs) == 0 {
			out = append(out, g)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	switch n := len(errs); {
	case n == 1:
		return nil, errs[0]
	case n > 1:
		shown := errs[:min(n, 3)]
		var names []string
		for _, e := range shown {
			names = append(names, e.Error())
		}
		more := ""
		if n > len(shown) {
			more = fmt.Sprintf("; and %d more", n-len(shown))
		}
		return nil, fmt.Errorf("%d damaged records: %s%s: %w", n, strings.Join(names, "; "), more, errs[0])
	}
	return out, nil
}

// decodeGroup decodes a group's records; it returns every problem found.
func (r reader) decodeGroup(name []byte, b *bolt.Bucket) (*GroupState, []error) {
	var errs []error
	raw, err := r.get(b, groupLoc(name, keyState))
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("state record: %w", err))
	case raw == nil:
		errs = append(errs, errors.New("no state record"))
	}
	var rec groupRecord
	if raw != nil {
		if rec, err = decodeState(string(name), raw); err != nil {
			errs = append(errs, err)
		}
	}
	reserved, err := r.u32(b, groupLoc(name, keyReserved))
	if err != nil {
		errs = append(errs, err)
	}
	g := &GroupState{Name: rec.Name, ID: rec.ID, SigningKey: rec.SigningKey, KEK: rec.KEK, TEKs: rec.TEKs,
		Seq: rec.Seq, SeqReserved: max(reserved, rec.Seq), UpdatedAt: rec.UpdatedAt, InFlight: rec.InFlight}
	if rec.PTStart != nil {
		g.PseudotimeStart = *rec.PTStart
	}
	mb := b.Bucket(bucketMembers)
	if mb == nil {
		return nil, append(errs, errors.New("no members bucket"))
	}
	mb.ForEach(func(k, v []byte) error {
		if v == nil {
			errs = append(errs, fmt.Errorf("member %q is a bucket", k))
			return nil
		}
		p, err := r.open(memberLoc(name, k), v)
		if err != nil {
			errs = append(errs, fmt.Errorf("member %q: %w", k, err))
			return nil
		}
		m, err := decodeMember(k, p)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		g.Members = append(g.Members, m)
		return nil
	})
	if len(errs) > 0 {
		return nil, errs
	}
	slices.SortFunc(g.Members, func(a, b MemberState) int { return a.Address.Compare(b.Address) })
	return g, nil
}

// decodeState decodes the payload of a group's state record.
func decodeState(name string, raw []byte) (groupRecord, error) {
	var rec groupRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return groupRecord{}, fmt.Errorf("state record: %w", err)
	}
	if rec.Name != name {
		return groupRecord{}, fmt.Errorf("state record names group %q", rec.Name)
	}
	return rec, nil
}

// decodeMember decodes the payload of the member record at key.
func decodeMember(key, raw []byte) (MemberState, error) {
	var m MemberState
	if err := json.Unmarshal(raw, &m); err != nil {
		return MemberState{}, fmt.Errorf("member %q: %w", key, err)
	}
	if !m.Address.IsValid() || m.Address.String() != string(key) {
		return MemberState{}, fmt.Errorf("member %q: record has address %s", key, m.Address)
	}
	return m, nil
}

// putU32 stores a sealed uint32 at l (bucket path, key) in b.
func putU32(b *bolt.Bucket, l loc, v uint32) error {
	return b.Put(l[len(l)-1], seal(l, binary.BigEndian.AppendUint32(nil, v)))
}

func checkName(name string) error {
	if name == "" || len(name) > 1024 {
		return fmt.Errorf("store: group name %q: must be 1 to 1024 octets", name)
	}
	return nil
}

// SaveGroup writes a whole group, members included, in one transaction
// (members not in g are removed). It never lowers the group's reserved
// sequence mark: the mark becomes the largest of the stored one,
// g.SeqReserved and g.Seq.
//
// A state marked Delta (ks.Server.DeltaState: the members changed since
// the previous one) writes the members it lists and deletes those in
// g.MembersGone, leaving every other stored member as it is: its cost is
// the members it lists, not the group's (issue 18). Everything else is
// written as for a whole state. A delta of a group the store does not
// hold is refused (ErrNoGroup): the others' records would be missing.
func (s *Store) SaveGroup(g *GroupState) error { return s.save(g, true) }

// SaveKeys writes a group as SaveGroup does but leaves its stored members
// as they are (g.Members is not read): the write a KS makes before
// sending a rekey, whose cost does not grow with the members (rewriting
// 10,000 of them takes some 60 ms: BenchmarkSaveGroup). A group not saved
// yet is saved whole.
func (s *Store) SaveKeys(g *GroupState) error { return s.save(g, false) }

func (s *Store) save(g *GroupState, withMembers bool) error {
	if g == nil {
		return errors.New("store: SaveGroup: nil group")
	}
	if err := checkName(g.Name); err != nil {
		return err
	}
	delta := withMembers && g.Delta
	// The members are checked and digested whether or not they are
	// written (a new group is saved whole).
	digests := make([]uint64, len(g.Members))
	var cur digestTable // the members' digests by address
	members := func() error {
		if g.Delta {
			return fmt.Errorf("store: group %s: a delta of members is no whole group: %w", g.Name, ErrNoGroup)
		}
		for i := range g.Members {
			m := &g.Members[i]
			if !m.Address.IsValid() {
				return fmt.Errorf("store: group %s: member without an address", g.Name)
			}
			digests[i] = memberDigest(s.seed, m)
		}
		cur = digestsOf(g, digests)
		for i := 1; i < len(cur); i++ {
			if cur[i].addr == cur[i-1].addr {
				return fmt.Errorf("store: group %s: member %s listed twice", g.Name, cur[i].addr)
			}
		}
		return nil
	}
	var dr deltaRecords
	if delta {
		var err error
		if dr, err = s.sealDelta(g, digests); err != nil {
			return err
		}
	} else if withMembers {
		if err := members(); err != nil {
			return err
		}
	}
	if withMembers {
		// One save of the members at a time: each starts from what the
		// previous one committed.
		s.memoMu.Lock()
		defer s.memoMu.Unlock()
	}
	rec := groupRecord{Name: g.Name, ID: g.ID, SigningKey: g.SigningKey, KEK: g.KEK,
		TEKs: g.TEKs, Seq: g.Seq, UpdatedAt: g.UpdatedAt, InFlight: g.InFlight}
	if !g.PseudotimeStart.IsZero() {
		rec.PTStart = &g.PseudotimeStart
	}
	state, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("store: group %s: %w", g.Name, err)
	}
	var known digestTable // what the last committed save wrote; nil: unknown
	locked := withMembers
	whole := false // SaveKeys saving a new group whole, without the lock
	r := s.reader()
	err = s.db.Update(func(tx *bolt.Tx) error {
		groups := tx.Bucket(bucketGroups)
		name := []byte(g.Name)
		b := groups.Bucket(name)
		reserved := max(g.SeqReserved, g.Seq)
		if b == nil {
			if delta {
				return fmt.Errorf("a delta of its members (%d changed): the group was never saved whole: %w", len(g.Members), ErrNoGroup)
			}
			var err error
			if b, err = groups.CreateBucket(name); err != nil {
				return err
			}
			if !withMembers {
				withMembers, whole = true, true // a new group is saved whole
				if err := members(); err != nil {
					return err
				}
			}
			floor := tx.Bucket(bucketSeqFloor)
			if floor.Get(name) != nil {
				// A damaged mark is an error: the group must not start below it.
				old, err := r.u32(floor, loc{bucketSeqFloor, name})
				if err != nil {
					return fmt.Errorf("seqfloor: %w", err)
				}
				reserved = max(reserved, old)
			}
			if err := floor.Delete(name); err != nil {
				return err
			}
		} else {
			old, err := r.u32(b, groupLoc(name, keyReserved))
			if err != nil {
				return err
			}
			reserved = max(reserved, old)
			if withMembers && !delta { // s.written only under memoMu, which SaveKeys does not hold
				if m := s.written[g.Name]; m != nil {
					known = m.table()
				}
			}
			// A state older than the stored one (a lower Seq: a periodic
			// save of members taken before the rekey whose keys SaveKeys
			// wrote since) leaves the stored keys, Seq and rekey in flight
			// as they are and writes only its members. A record that
			// cannot be read is replaced, as before.
			if raw, err := r.get(b, groupLoc(name, keyState)); err == nil && raw != nil {
				var cur struct {
					Seq      uint32     `json:"seq"`
					InFlight *PushState `json:"in_flight"`
					TEKs     []struct {
						SPI         uint32 `json:"spi"`
						SIDBits     uint8  `json:"sid_bits"`
						SIDReserved uint32 `json:"sid_reserved"`
					} `json:"teks"`
				}
				if json.Unmarshal(raw, &cur) == nil {
					if cur.Seq > g.Seq {
						state = nil
					} else {
						// A key's sender-ID high-water mark never goes
						// down: a periodic save taken before a
						// registration raised it and written after the
						// keys-only write of the raise keeps the raise
						// (ks.TEKState.SIDReserved).
						var raised []ks.TEKState
						for _, c := range cur.TEKs {
							for i := range rec.TEKs {
								t := &rec.TEKs[i]
								if t.SPI != c.SPI || c.SIDReserved == 0 || sidMark(c.SIDReserved, c.SIDBits, t.SIDBits) <= t.SIDReserved {
									continue
								}
								if raised == nil {
									raised = slices.Clone(rec.TEKs)
									rec.TEKs = raised
									t = &rec.TEKs[i]
								}
								t.SIDReserved = sidMark(c.SIDReserved, c.SIDBits, t.SIDBits)
							}
						}
						// A keys-only write of the same Seq without a
						// rekey in flight (a registration's raised
						// sender-ID mark, written from ks.KeysState,
						// which has none) leaves the stored one: only a
						// save of the members says a delivery ended
						// (ks.Delivery), and a restart resumes it.
						kept := !withMembers && rec.InFlight == nil && cur.InFlight != nil && cur.Seq == g.Seq
						if kept {
							rec.InFlight = cur.InFlight
						}
						if raised != nil || kept {
							if state, err = json.Marshal(rec); err != nil {
								return err
							}
						}
					}
				}
			}
		}
		if state != nil {
			if err := b.Put(keyState, seal(groupLoc(name, keyState), state)); err != nil {
				return err
			}
		}
		if err := putU32(b, groupLoc(name, keyReserved), reserved); err != nil {
			return err
		}
		if !withMembers {
			return nil
		}
		if delta {
			return putDelta(b, dr)
		}
		return s.putMembers(b, g, digests, cur, known)
	})
	switch {
	case locked && err != nil:
		delete(s.written, g.Name) // on disk is the last commit's: unknown here
	case delta:
		if m := s.written[g.Name]; m != nil {
			for i := range g.Members {
				m.set(g.Members[i].Address, digests[i])
			}
			for _, a := range g.MembersGone {
				m.drop(a)
			}
			if len(m.over) > len(m.t)/4+1024 {
				m.table()
			}
		}
	case locked:
		s.written[g.Name] = &memberMemo{t: cur}
	case whole:
		s.forget(g.Name) // a concurrent save may have followed it
	}
	if err != nil {
		return fmt.Errorf("store: %s: save group %s: %w", s.path, g.Name, err)
	}
	return nil
}

// deltaRecords are what a delta writes: its members' keys and sealed
// records, and the keys of the members gone, each sorted by key.
type deltaRecords struct {
	puts []deltaRecord
	gone []deltaRecord // (no record)
}

// deltaRecord is a member's key and sealed record, with the key's first
// 16 octets as two big-endian integers (zero-filled): a sort of a delta
// by key compares them, not the octets, unless they are equal.
type deltaRecord struct {
	hi, lo   uint64
	key, rec []byte
}

func newDeltaRecord(key, rec []byte) deltaRecord {
	var p [16]byte
	copy(p[:], key)
	return deltaRecord{binary.BigEndian.Uint64(p[:8]), binary.BigEndian.Uint64(p[8:]), key, rec}
}

// cmpDeltaRecord orders records by key as bytes.Compare does: zero-filled
// 16-octet prefixes that differ order their keys as the keys would (a
// shorter key's zero fill sorts before any octet but a zero, which a key
// can hold only in an IPv6 zone: equal prefixes are settled by the keys).
func cmpDeltaRecord(x, y deltaRecord) int {
	if c := cmp.Compare(x.hi, y.hi); c != 0 {
		return c
	}
	if c := cmp.Compare(x.lo, y.lo); c != 0 {
		return c
	}
	return bytes.Compare(x.key, y.key)
}

// deltaChunk is the size of the buffers a delta's keys and records are
// appended to (~150 members each): a few allocations a delta, not three
// a member.
const deltaChunk = 64 << 10

// sealDelta checks a delta's members (valid addresses, each listed once,
// none both changed and gone), digests them into digests, and encodes
// and seals them, before the transaction: their records do not depend on
// what is stored. The records stay unchanged until the transaction
// commits (bbolt keeps the values put until then).
func (s *Store) sealDelta(g *GroupState, digests []uint64) (deltaRecords, error) {
	var dr deltaRecords
	dr.puts = make([]deltaRecord, 0, len(g.Members))
	// What a member's tag covers (appendRecordTag), up to its key: the
	// same for every member of the delta. The rest is appended to it for
	// each, and its tag is sha256.Sum256's of it (no hash.Hash: its
	// arguments escaped through the interface, two allocations a member).
	pre := append([]byte(tagDomain), 4)
	for _, p := range [][]byte{bucketGroups, []byte(g.Name), bucketMembers} {
		pre = binary.AppendUvarint(pre, uint64(len(p)))
		pre = append(pre, p...)
	}
	prefix := len(pre)
	var buf []byte
	// room makes room for n octets, with a buffer for the members left
	// (n octets each, at most deltaChunk): a delta of ten members (a
	// routine save) gets a buffer of their size.
	room := func(n, left int) {
		if cap(buf)-len(buf) < n {
			buf = make([]byte, 0, max(min(deltaChunk, n*left), n))
		}
	}
	for i := range g.Members {
		m := &g.Members[i]
		if !m.Address.IsValid() {
			return dr, fmt.Errorf("store: group %s: member without an address", g.Name)
		}
		digests[i] = memberDigest(s.seed, m)
		room(64+len(m.Address.Zone())+memberRoom(m), len(g.Members)-i)
		start := len(buf)
		buf = m.Address.AppendTo(buf)
		key := buf[start:len(buf):len(buf)]
		end := len(buf)
		v, err := appendMember(buf[end:end], m)
		if err != nil {
			return dr, fmt.Errorf("store: group %s: member %s: %w", g.Name, m.Address, err)
		}
		pre = append(binary.AppendUvarint(pre[:prefix], uint64(len(key))), key...)
		pre = append(pre, v...)
		tag := sha256.Sum256(pre)
		v = append(v, tag[:]...)
		rec := v // appended elsewhere: more than the room (encoding/json's escapes)
		if len(v) <= cap(buf)-end && &v[0] == &buf[end : end+1][0] {
			buf = buf[:end+len(v)]
			rec = buf[end:len(buf):len(buf)]
		}
		dr.puts = append(dr.puts, newDeltaRecord(key, rec))
	}
	// In key order, as putMembers; a member listed twice is next to itself.
	slices.SortFunc(dr.puts, cmpDeltaRecord)
	for i := 1; i < len(dr.puts); i++ {
		if bytes.Equal(dr.puts[i].key, dr.puts[i-1].key) {
			return dr, fmt.Errorf("store: group %s: member %s listed twice", g.Name, dr.puts[i].key)
		}
	}
	if len(g.MembersGone) == 0 {
		return dr, nil
	}
	dr.gone = make([]deltaRecord, 0, len(g.MembersGone))
	for _, a := range g.MembersGone {
		if !a.IsValid() {
			return dr, fmt.Errorf("store: group %s: a member gone without an address", g.Name)
		}
		dr.gone = append(dr.gone, newDeltaRecord(a.AppendTo(nil), nil))
	}
	slices.SortFunc(dr.gone, cmpDeltaRecord)
	j := 0
	for i, o := range dr.gone {
		for j < len(dr.puts) && cmpDeltaRecord(dr.puts[j], o) < 0 {
			j++
		}
		if (i > 0 && bytes.Equal(dr.gone[i-1].key, o.key)) || (j < len(dr.puts) && bytes.Equal(dr.puts[j].key, o.key)) {
			return dr, fmt.Errorf("store: group %s: member %s listed twice (changed or gone)", g.Name, o.key)
		}
	}
	return dr, nil
}

// membersFill is how full bbolt fills the pages of a members bucket it
// splits (its FillPercent, for the transaction; not stored: any groupvpn
// reads the pages). bbolt's default, half, suits keys inserted anywhere;
// a group's new members come in runs of keys (a storm's addresses in
// sequence, a first save in key order), which it left in half-empty
// pages: nine tenths, with room for a record that grows by a few octets
// when its member registers again, wrote 42% fewer pages per member in a
// storm of 60,000 new members and made the file 43% smaller, and its
// members registering again in random order wrote 7% fewer
// (BenchmarkSaveGroupStormPages: 0.136 -> 0.078 and 1.10 -> 1.03 pages a
// member, 523 -> 297 B of file a member; issue 18). bbolt also merges a page under half of that with a
// neighbour when a save deletes members (under 45% full, not 25%): a
// removal's saves may rewrite a few more pages.
const membersFill = 0.9

// putDelta writes the members a delta lists and deletes those gone,
// leaving the group's other stored members alone.
func putDelta(b *bolt.Bucket, dr deltaRecords) error {
	mb, err := b.CreateBucketIfNotExists(bucketMembers)
	if err != nil {
		return err
	}
	mb.FillPercent = membersFill
	for _, p := range dr.puts {
		if err := mb.Put(p.key, p.rec); err != nil {
			return err
		}
	}
	for _, o := range dr.gone {
		if err := mb.Delete(o.key); err != nil {
			return err
		}
	}
	return nil
}

// sidMark is a sender-ID high-water mark of width from at width to (0:
// the narrowest, 16 bits), rounded up: no ID at or above it was handed
// out.
func sidMark(mark uint32, from, to uint8) uint32 {
	f, t := max(int(from), 16), max(int(to), 16)
	if f <= t {
		return mark << (t - f)
	}
	sh := f - t
	return (mark + 1<<sh - 1) >> sh
}

// putMembers makes the group's members bucket hold exactly g.Members:
// a member whose digest is the one last committed is left alone, any
// other is encoded, sealed and written unless the stored record is the
// same octets; a stored member not in g is deleted. known is what the last
// committed save wrote (nil: unknown, the stored records are read).
func (s *Store) putMembers(b *bolt.Bucket, g *GroupState, digests []uint64, cur, known digestTable) error {
	mb, err := b.CreateBucketIfNotExists(bucketMembers)
	if err != nil {
		return err
	}
	mb.FillPercent = membersFill
	name := []byte(g.Name)
	var puts [][2][]byte
	for i := range g.Members {
		m := &g.Members[i]
		if d, ok := known.find(m.Address); ok && d == digests[i] {
			continue
		}
		addr := m.Address.AppendTo(nil)
		rec, err := sealMember(memberLoc(name, addr), m)
		if err != nil {
			return fmt.Errorf("member %s: %w", m.Address, err)
		}
		if bytes.Equal(mb.Get(addr), rec) {
			continue
		}
		puts = append(puts, [2][]byte{addr, rec})
	}
	// In key order: bbolt inserts each key into its page's sorted slice,
	// and addresses sorted as addresses are not sorted as strings (a whole
	// group of 60,000 took seconds in address order).
	slices.SortFunc(puts, func(a, b [2][]byte) int { return bytes.Compare(a[0], b[0]) })
	for _, kv := range puts {
		if err := mb.Put(kv[0], kv[1]); err != nil {
			return err
		}
	}
	if known != nil {
		// Both sorted: the members known and gone.
		j := 0
		for _, e := range known {
			for j < len(cur) && cur[j].addr.Less(e.addr) {
				j++
			}
			if j < len(cur) && cur[j].addr == e.addr {
				continue
			}
			if err := mb.Delete([]byte(e.addr.String())); err != nil {
				return err
			}
		}
		return nil
	}
	var gone [][]byte
	c := mb.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if a, err := netip.ParseAddr(string(k)); err != nil || !has(cur, a) {
			gone = append(gone, slices.Clone(k))
		}
	}
	for _, k := range gone {
		if err := mb.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// has reports whether a is in t.
func has(t digestTable, a netip.Addr) bool { _, ok := t.find(a); return ok }

// forget drops what the Store remembers of a group's members: a write
// other than a whole save changed them.
func (s *Store) forget(group string) {
	s.memoMu.Lock()
	delete(s.written, group)
	s.memoMu.Unlock()
}

// memberDigest is a 64-bit digest of every field of a member that its
// stored record holds (times by their instant), keyed by the Store's
// seed: equal digests mean an unchanged member, but for a collision of
// probability 2^-64 per changed member.
func memberDigest(seed maphash.Seed, m *MemberState) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	a := m.Address.As16()
	h.Write(a[:])
	h.WriteString(m.Identity)
	h.WriteByte(0)
	h.WriteString(m.Version)
	h.WriteByte(0)
	var n [8]byte
	for _, v := range []int64{m.Registered.UnixNano(), m.LastRegister.UnixNano(), int64(m.Registrations),
		int64(m.MissedRekeys), int64(m.Port), int64(m.SIDBits), int64(len(m.SenderIDs)), int64(len(m.PrevSenderIDs))} {
		binary.LittleEndian.PutUint64(n[:], uint64(v))
		h.Write(n[:])
	}
	for _, sid := range m.SenderIDs {
		binary.LittleEndian.PutUint32(n[:4], sid)
		h.Write(n[:4])
	}
	for _, sid := range m.PrevSenderIDs {
		binary.LittleEndian.PutUint32(n[:4], sid)
		h.Write(n[:4])
	}
	if m.Removed {
		h.WriteByte(1)
	} else {
		h.WriteByte(0)
	}
	return h.Sum64()
}

// DeleteGroup removes a group and its members. Its reserved sequence mark
// is kept, so a group saved again under the same name continues above it.
// Deleting a group that is not there is not an error.
func (s *Store) DeleteGroup(name string) error {
	defer s.forget(name)
	err := s.db.Update(func(tx *bolt.Tx) error {
		groups := tx.Bucket(bucketGroups)
		b := groups.Bucket([]byte(name))
		if b == nil {
			return nil
		}
		reserved, err := s.reader().u32(b, groupLoc([]byte(name), keyReserved))
		if err != nil {
			return err
		}
		if err := putU32(tx.Bucket(bucketSeqFloor), loc{bucketSeqFloor, []byte(name)}, reserved); err != nil {
			return err
		}
		return groups.DeleteBucket([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("store: %s: delete group %s: %w", s.path, name, err)
	}
	return nil
}

// groupBucket returns a saved group's bucket or ErrNoGroup.
func groupBucket(tx *bolt.Tx, name string) (*bolt.Bucket, error) {
	b := tx.Bucket(bucketGroups).Bucket([]byte(name))
	if b == nil {
		return nil, fmt.Errorf("group %q: %w", name, ErrNoGroup)
	}
	return b, nil
}

// SaveMember adds or replaces one member of a saved group.
func (s *Store) SaveMember(group string, m MemberState) error {
	defer s.forget(group)
	if !m.Address.IsValid() {
		return fmt.Errorf("store: group %s: member without an address", group)
	}
	v, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("store: group %s: member %s: %w", group, m.Address, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := groupBucket(tx, group)
		if err != nil {
			return err
		}
		mb, err := b.CreateBucketIfNotExists(bucketMembers)
		if err != nil {
			return err
		}
		addr := []byte(m.Address.String())
		return mb.Put(addr, seal(memberLoc([]byte(group), addr), v))
	})
	if err != nil {
		return fmt.Errorf("store: %s: save member %s of group %s: %w", s.path, m.Address, group, err)
	}
	return nil
}

// DeleteMember removes one member of a saved group; a member that is not
// there is not an error.
func (s *Store) DeleteMember(group string, addr netip.Addr) error {
	defer s.forget(group)
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := groupBucket(tx, group)
		if err != nil {
			return err
		}
		if mb := b.Bucket(bucketMembers); mb != nil {
			return mb.Delete([]byte(addr.String()))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: %s: delete member %s of group %s: %w", s.path, addr, group, err)
	}
	return nil
}

// ReserveSeq durably advances the group's reserved sequence mark by n and
// returns the block of numbers now reserved, from..to (to-from+1 == n).
// The transaction is committed and fsync'ed before ReserveSeq returns, so
// the KS may send messages numbered from..to once it has returned without
// error, and never before (see the package documentation).
func (s *Store) ReserveSeq(group string, n uint32) (from, to uint32, err error) {
	if n == 0 {
		return 0, 0, fmt.Errorf("store: group %s: reserve 0 sequence numbers", group)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := groupBucket(tx, group)
		if err != nil {
			return err
		}
		l := groupLoc([]byte(group), keyReserved)
		r, err := s.reader().u32(b, l)
		if err != nil {
			return err
		}
		if uint64(r)+uint64(n) > math.MaxUint32 {
			return fmt.Errorf("sequence numbers exhausted (%d reserved, %d more asked)", r, n)
		}
		if err := putU32(b, l, r+n); err != nil {
			return err
		}
		from, to = r+1, r+n
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("store: %s: reserve sequence numbers for group %s: %w", s.path, group, err)
	}
	return from, to, nil
}
