package tmd

import (
	"fmt"
	"slices"
	"sync"

	"github.com/groupvpn/groupvpn/internal/sadb"
)

// Backend is what tmd hands the group SAs and policies to: the data plane
// that forwards with them (userspace ESP, or the kernel's XFRM). It is
// split as strongSwan's kernel_ipsec is: SA operations by SPI, separate
// from the policy operations of a group (docs/architecture.md, "tmd's
// backend boundary").
//
// The KEK is control-plane state: tmd keeps the KEKs in its database
// (Server.DB) so that a restarted isakmpd finds them, but never hands one
// to a Backend, which has no operation taking one.
type Backend interface {
	SABackend
	PolicyBackend
}

// SABackend holds the TEKs, each by group and SPI.
type SABackend interface {
	// AddSA installs a TEK the backend does not hold.
	AddSA(sadb.TEK) error
	// UpdateSA replaces a TEK the backend holds (same group and SPI): a
	// rekey sets the old TEK's Deactivate, a re-registration its
	// lifetime.
	UpdateSA(sadb.TEK) error
	// DeleteSA removes a TEK (deleted by the KS, or its lifetime ended).
	DeleteSA(group string, spi uint32) error
	// QuerySA returns the counters of a TEK the backend holds.
	QuerySA(group string, spi uint32) (SACounters, error)
}

// PolicyBackend holds each group's ordered policy: the KS's match ACL,
// first matching entry wins, Protect entries encrypted with the group's
// TEK, Bypass entries passed in the clear. FailMode says what happens to
// traffic a Protect entry covers while the group has no TEK for it.
type PolicyBackend interface {
	// InstallPolicy installs or replaces the whole policy of group.
	InstallPolicy(group string, p []sadb.PolicyEntry, fail sadb.FailMode) error
	// RemovePolicy removes the policy of group (none installed is no
	// error).
	RemovePolicy(group string) error
}

// SACounters are a TEK's packet counters as `show crypto ipsec sa`
// shows them (SPEC E1).
type SACounters struct {
	EncapsPackets uint64 `json:"encaps_packets"`
	EncapsBytes   uint64 `json:"encaps_bytes"`
	DecapsPackets uint64 `json:"decaps_packets"`
	DecapsBytes   uint64 `json:"decaps_bytes"`
	ReplayDrops   uint64 `json:"replay_drops"`
	AuthFailures  uint64 `json:"auth_failures"`
	TBARDrops     uint64 `json:"tbar_drops"` // pseudotime missing or outside the window
}

// MemoryBackend is the in-memory Backend: it forwards nothing and only
// remembers what it was handed (its counters stay zero). It is tmd's
// default and the tests' fake. It also serves as the key source of a
// userspace data plane (TEKs, Policy, FailMode: what
// internal/dataplane's Keys reads), told of every change by the
// function given to Notify. Safe for concurrent use.
type MemoryBackend struct {
	db *sadb.Memory

	mu      sync.Mutex
	fail    map[string]sadb.FailMode
	changed func()
}

var _ Backend = (*MemoryBackend)(nil)

// NewMemoryBackend returns an empty in-memory backend.
func NewMemoryBackend() *MemoryBackend {
	return &MemoryBackend{db: sadb.NewMemory(), fail: map[string]sadb.FailMode{}}
}

// Notify sets the function called after every change (nil: none), outside
// the backend's lock: a data plane rebuilds its snapshot then.
func (b *MemoryBackend) Notify(f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.changed = f
}

func (b *MemoryBackend) notify() {
	b.mu.Lock()
	f := b.changed
	b.mu.Unlock()
	if f != nil {
		f()
	}
}

// done notifies after a change that succeeded and returns err.
func (b *MemoryBackend) done(err error) error {
	if err == nil {
		b.notify()
	}
	return err
}

func (b *MemoryBackend) has(group string, spi uint32) bool {
	for _, t := range b.db.TEKs() {
		if t.Group == group && t.SPI == spi {
			return true
		}
	}
	return false
}

func (b *MemoryBackend) AddSA(t sadb.TEK) error {
	if b.has(t.Group, t.SPI) {
		return fmt.Errorf("backend: group %s already has the TEK with SPI 0x%08x", t.Group, t.SPI)
	}
	return b.done(b.db.InstallTEK(t))
}

func (b *MemoryBackend) UpdateSA(t sadb.TEK) error {
	if !b.has(t.Group, t.SPI) {
		return fmt.Errorf("backend: group %s has no TEK with SPI 0x%08x to update", t.Group, t.SPI)
	}
	return b.done(b.db.InstallTEK(t))
}

func (b *MemoryBackend) DeleteSA(group string, spi uint32) error {
	return b.done(b.db.DeleteTEK(group, spi))
}

func (b *MemoryBackend) QuerySA(group string, spi uint32) (SACounters, error) {
	if !b.has(group, spi) {
		return SACounters{}, fmt.Errorf("backend: group %s has no TEK with SPI 0x%08x", group, spi)
	}
	return SACounters{}, nil
}

func (b *MemoryBackend) InstallPolicy(group string, p []sadb.PolicyEntry, fail sadb.FailMode) error {
	b.mu.Lock()
	if len(p) == 0 {
		p = nil
	}
	b.db.SetPolicy(group, slices.Clone(p))
	b.fail[group] = fail
	b.mu.Unlock()
	return b.done(nil)
}

func (b *MemoryBackend) RemovePolicy(group string) error {
	b.mu.Lock()
	b.db.SetPolicy(group, nil)
	delete(b.fail, group)
	b.mu.Unlock()
	return b.done(nil)
}

// TEKs returns the TEKs the backend holds, by group then SPI.
func (b *MemoryBackend) TEKs() []sadb.TEK { return b.db.TEKs() }

// Policy returns the policy of group as installed, nil when none is.
func (b *MemoryBackend) Policy(group string) []sadb.PolicyEntry { return b.db.Policy(group) }

// FailMode returns the fail mode the policy of group was installed with
// (FailOpen when none is).
func (b *MemoryBackend) FailMode(group string) sadb.FailMode {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.fail[group]
}

// Policies returns every group's policy as installed.
func (b *MemoryBackend) Policies() map[string][]sadb.PolicyEntry { return b.db.Policies() }
