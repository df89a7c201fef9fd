// Package loadgen plays many real group members against a key server that
// runs as its own process (issue 18), without a socket per member: every
// simulated GM has its own address in 127.0.0.0/8 and shares one UDP socket
// (Conn: IP_PKTINFO names the source of each datagram sent and the
// destination of each one received, by which it is demultiplexed to its GM).
//
// Each GM runs the project's sans-IO cores as isakmpd's node does: a
// gm.Member (registration, failover and backoff, re-registration with
// jitter, rekey acceptance with the sequence filter and the signature,
// RFC 8263 ACKs, GM removal), over an ike.Endpoint of its own address as
// main-mode initiator while it registers, with GROUPKEY-PULL
// (gdoi.Pull) inside the member. What differs from a node, and why:
//
//   - A GM runs a fresh main mode for each registration and forgets its
//     phase-1 SA once registered (the KS keeps its side until it expires):
//     the worst case for the KS, and it keeps a GM's memory small.
//   - The TEKs and KEK go to a small table (table.go) instead of an SA
//     database; the table is what is checked for "a valid TEK held".
//   - One multicast socket receives a multicast rekey once for the process;
//     every GM holding the KEK then opens, verifies and applies it itself
//     (gm.Member.Push), as each would on its own host.
//
// The generator's GMs are split into shards, one goroutine and one socket
// each (every GM of a shard shares its port): a shard reads its own
// socket, so a datagram is read, handled and answered on one goroutine,
// with no hand-off between goroutines (on a shared 2-core host each
// cross-thread wake-up costs the key server CPU too, issue 18). A GM is
// only ever touched by its shard.
package loadgen

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/groupvpn/groupvpn/internal/gm"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/mcast"
	"github.com/groupvpn/groupvpn/isakmp"
)

// Options configure a generator.
type Options struct {
	KS      netip.AddrPort // the key server
	Members int
	// Base is the first GM's address; GM i has Base + i. It and the
	// addresses after it must be in 127.0.0.0/8.
	Base netip.Addr
	// Port is the first shard's socket's port (shard s: Port+s; its GMs'
	// port); 0: ephemeral ones.
	Port    uint16
	Group   string // the group's name, as configured on the KS
	GroupID uint32 // its identity number
	PSK     []byte
	// Suite is the phase-1 suite offered (default: AES-256, SHA-256,
	// ECP-256, pre-shared key: the lab's).
	Suite ike.Suite
	// Window bounds the first registrations in progress at once (default
	// 256); re-registrations are the members' own (jittered).
	Window int
	Shards int // goroutines, one socket each (default 1)
	// Interface the multicast rekeys arrive on (default "lo").
	Interface string
	// KeysAhead is how many main-mode key pairs are made before the
	// first registration begins (keys.go: the rig's choice, so that the
	// key server gets the cores in the stage): 0, one per member;
	// negative, none (each is made in its exchange). Once they are used
	// up a member makes its pair in the exchange.
	KeysAhead int
	// Prefault: once the key pairs are made, touch the heap the stage's
	// allocations will run through (prefault.go), so that the stage
	// takes no page fault for it.
	Prefault bool
}

func (o *Options) defaults() error {
	if o.Members <= 0 {
		return errors.New("loadgen: no members")
	}
	if !o.Base.IsValid() {
		o.Base = netip.MustParseAddr("127.64.0.1")
	}
	last := addrAt(o.Base, o.Members-1)
	lo := netip.MustParsePrefix("127.0.0.0/8")
	if !lo.Contains(o.Base) || !lo.Contains(last) || last.Less(o.Base) {
		return fmt.Errorf("loadgen: %d members from %s leave 127.0.0.0/8", o.Members, o.Base)
	}
	if !o.KS.IsValid() {
		return errors.New("loadgen: no key server")
	}
	if i, ok := addrIndex(o.Base, o.KS.Addr()); ok && int(i) < o.Members {
		return fmt.Errorf("loadgen: the key server %s is among the members' addresses", o.KS.Addr())
	}
	if o.Suite == (ike.Suite{}) {
		o.Suite = ike.Suite{KeyBits: 256, Hash: ike.SHA256, Group: 19, Auth: ike.AuthPSK, Lifetime: 86400 * time.Second}
	}
	if o.Window <= 0 {
		o.Window = 256
	}
	if o.Shards <= 0 {
		o.Shards = 1
	}
	if o.Port != 0 && int(o.Port)+o.Shards-1 > 65535 {
		return fmt.Errorf("loadgen: %d shards from port %d leave the port range", o.Shards, o.Port)
	}
	o.Shards = min(o.Shards, o.Members)
	if o.KeysAhead == 0 {
		o.KeysAhead = o.Members
	}
	o.KeysAhead = max(o.KeysAhead, 0)
	if _, ok := ike.GroupByID(o.Suite.Group); !ok {
		return fmt.Errorf("loadgen: DH group %d", o.Suite.Group)
	}
	if o.Interface == "" {
		o.Interface = "lo"
	}
	return nil
}

// Stats are the generator's totals, safe to read while it runs.
type Stats struct {
	Started       atomic.Int64 // GMs whose first registration began
	Registered    atomic.Int64 // GMs registered at least once
	Registrations atomic.Int64 // registrations completed, re-registrations included
	FirstAt       atomic.Int64 // CLOCK_MONOTONIC ns (Monotonic) of the first completed registration
	LastFirstAt   atomic.Int64 // CLOCK_MONOTONIC ns (Monotonic) of the last GM's first registration
	LastRegAt     atomic.Int64 // CLOCK_MONOTONIC ns (Monotonic) of the last completed registration
	Failures      atomic.Int64 // registration attempts that failed (GM_REGS_FAILED)
	Rekeys        atomic.Int64 // rekeys accepted (applied) by a GM
	Acks          atomic.Int64 // first ACKs of an accepted rekey
	AcksAgain     atomic.Int64 // ACKs of a retransmitted rekey
	LastRekeyAt   atomic.Int64 // CLOCK_MONOTONIC ns (Monotonic) of the last rekey accepted
	LastAckAt     atomic.Int64 // CLOCK_MONOTONIC ns (Monotonic) of the last first ACK sent
	Removals      atomic.Int64 // GM-removal rekeys received
	RekeyRejected atomic.Int64 // rekeys a GM refused (bad signature, replay...)
	Lacked        atomic.Int64 // GMs seen without a valid TEK after their first registration
	Valid         atomic.Int64 // GMs holding a valid TEK at the last sweep
	PacketsIn     atomic.Int64
	PacketsOut    atomic.Int64
	ReadCalls     atomic.Int64 // recvmmsg calls of the shared socket (PacketsIn per call: the batching)
	SendCalls     atomic.Int64 // sendmmsg calls (PacketsOut per call)
	SendErrors    atomic.Int64
	DropNotMember atomic.Int64 // datagrams to an address that is no GM's
	DropMalformed atomic.Int64 // no ISAKMP v1 header
	DropNoSA      atomic.Int64 // IKE datagram for a GM holding no phase-1 SA (e.g. a Delete after removal)
	DropNoKEK     atomic.Int64 // GROUPKEY-PUSH under no KEK the GM holds
	MulticastIn   atomic.Int64 // multicast datagrams received (once for the process)
	HeapPerMember atomic.Int64 // live heap per GM after a GC once all registered (octets)
	Timers        atomic.Int64 // GM timers run
	TimersStale   atomic.Int64 // timer entries found superseded: 0 since the heap moves a GM's one entry in place (kept for the output's format)
	TimersClamped atomic.Int64 // GM timers due again at once after they ran, put 10 ms later
	// KeyPairsAhead are the members' key pairs made before the first
	// registration (Options.KeysAhead), ReadyAt (CLOCK_MONOTONIC ns) and
	// ReadyCPU (the process's user + system CPU, ns) when they were
	// made and the first registration could begin: the stage's CPU is
	// the process's since ReadyCPU. KeyPairsInline are the pairs made in
	// an exchange, the pool being empty.
	KeyPairsAhead  atomic.Int64
	KeyPairsInline atomic.Int64
	ReadyAt        atomic.Int64
	ReadyCPU       atomic.Int64
	Prefaulted     atomic.Int64 // octets of heap touched before the stage (Options.Prefault), in ReadyCPU
}

// Snapshot is Stats as values (what `groupvpn loadgen` prints, one JSON
// line per interval).
// Times are CLOCK_MONOTONIC nanoseconds (Monotonic).
type Snapshot struct {
	Time                                   int64 `json:"t"`
	Members                                int   `json:"members"`
	Started, Registered, Registrations     int64
	FirstAt, LastFirstAt, LastRegAt        int64
	Failures, Rekeys, Acks, AcksAgain      int64
	LastRekeyAt, LastAckAt, Removals       int64
	RekeyRejected, Lacked, Valid           int64
	PacketsIn, PacketsOut, SendErrors      int64
	ReadCalls, SendCalls                   int64
	DropNotMember, DropMalformed, DropNoSA int64
	DropNoKEK, MulticastIn, HeapPerMember  int64
	Timers, TimersStale, TimersClamped     int64
	KeyPairsAhead, KeyPairsInline          int64
	ReadyAt, ReadyCPU, Prefaulted          int64
}

// Snapshot reads the totals.
func (g *Generator) Snapshot() Snapshot {
	s := &g.Stats
	return Snapshot{Time: Monotonic(), Members: g.o.Members,
		Started: s.Started.Load(), Registered: s.Registered.Load(), Registrations: s.Registrations.Load(),
		FirstAt: s.FirstAt.Load(), LastFirstAt: s.LastFirstAt.Load(), LastRegAt: s.LastRegAt.Load(),
		Failures: s.Failures.Load(), Rekeys: s.Rekeys.Load(), Acks: s.Acks.Load(), AcksAgain: s.AcksAgain.Load(),
		LastRekeyAt: s.LastRekeyAt.Load(), LastAckAt: s.LastAckAt.Load(), Removals: s.Removals.Load(),
		RekeyRejected: s.RekeyRejected.Load(), Lacked: s.Lacked.Load(), Valid: s.Valid.Load(),
		ReadCalls: s.ReadCalls.Load(), SendCalls: s.SendCalls.Load(),
		PacketsIn: s.PacketsIn.Load(), PacketsOut: s.PacketsOut.Load(), SendErrors: s.SendErrors.Load(),
		DropNotMember: s.DropNotMember.Load(), DropMalformed: s.DropMalformed.Load(), DropNoSA: s.DropNoSA.Load(),
		DropNoKEK: s.DropNoKEK.Load(), MulticastIn: s.MulticastIn.Load(), HeapPerMember: s.HeapPerMember.Load(),
		Timers: s.Timers.Load(), TimersStale: s.TimersStale.Load(), TimersClamped: s.TimersClamped.Load(),
		KeyPairsAhead: s.KeyPairsAhead.Load(), KeyPairsInline: s.KeyPairsInline.Load(),
		ReadyAt: s.ReadyAt.Load(), ReadyCPU: s.ReadyCPU.Load(), Prefaulted: s.Prefaulted.Load()}
}

// Generator plays Options.Members GMs.
type Generator struct {
	o Options
	// t0 and mono0 are one instant, as a time.Time (with Go's monotonic
	// reading) and as CLOCK_MONOTONIC: timers and timestamps are kept as
	// monotonic offsets, which a step of the wall clock does not move.
	t0     time.Time
	mono0  int64
	ike    *ike.Config
	sims   []sim
	shards []*shard
	Stats  Stats

	mu    sync.Mutex
	mcast map[netip.AddrPort]*net.UDPConn // multicast groups joined
}

// sim is one simulated GM.
type sim struct {
	m     *gm.Member
	tab   table
	ep    *ike.Endpoint // while it registers
	sa    *ike.SA
	wake  int64 // its timer (ns since Generator.t0), when hpos > 0
	hpos  int32 // its entry in its shard's wakeHeap, plus 1; 0: none
	regs  int
	rk    int // rekeys received, as the member counts them
	acks  int
	state uint8
}

const (
	simWaiting    uint8 = iota // first registration not started
	simStarted                 // first registration in progress (counted in the window)
	simRegistered              // registered at least once, held a valid TEK
	simLacked                  // ... and was seen without one since
)

// New opens the shared socket and prepares the GMs.
func New(ctx context.Context, o Options) (*Generator, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	psk := o.PSK
	g := &Generator{o: o, t0: time.Now(), mono0: Monotonic(), sims: make([]sim, o.Members), mcast: map[netip.AddrPort]*net.UDPConn{},
		ike: &ike.Config{Suites: []ike.Suite{o.Suite}, DOI: isakmp.DOIGDOI, Identity: ike.IdentityAddress,
			Creds: ike.Credentials{PSK: func(netip.Addr) ([]byte, bool) { return psk, true }}}}
	servers := []netip.AddrPort{o.KS}
	for i := range g.sims {
		g.sims[i].m = gm.NewMember(gm.Config{Name: o.Group, ID: o.GroupID, Servers: servers, SIDs: 1},
			gm.Options{Dataplane: &g.sims[i].tab, KEKs: &g.sims[i].tab, Rand: rand.Reader, Quiet: true})
	}
	for s := 0; s < o.Shards; s++ {
		port := o.Port
		if port != 0 {
			port += uint16(s)
		}
		conn, err := Listen(ctx, port, 32<<20)
		if err != nil {
			g.close()
			return nil, err
		}
		sh := &shard{g: g, id: s, conn: conn, recv: NewRecvBuf(recvBatch), mcast: make(chan packet, 1024), window: max(1, o.Window/o.Shards)}
		group, _ := ike.GroupByID(o.Suite.Group)
		sh.keys = keyPool{group: group, inline: &g.Stats.KeyPairsInline}
		cfg := *g.ike
		cfg.KeyPair = sh.keys.take
		sh.ike = &cfg
		base := &tableBase{group: o.Group, groupID: o.GroupID, t0: g.t0}
		for i := s; i < o.Members; i += o.Shards {
			sh.waiting = append(sh.waiting, int32(i))
			g.sims[i].tab.base = base
		}
		g.shards = append(g.shards, sh)
	}
	return g, nil
}

// Monotonic is CLOCK_MONOTONIC in nanoseconds: the clock of every
// timestamp in Stats and Snapshot (the same in every process of the host,
// and unmoved by steps of the wall clock).
func Monotonic() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return time.Now().UnixNano()
	}
	return ts.Nano()
}

// mono is now on the CLOCK_MONOTONIC scale.
func (g *Generator) mono(now time.Time) int64 { return g.mono0 + int64(now.Sub(g.t0)) }

// Addr is GM i's address.
func (g *Generator) Addr(i int) netip.Addr { return addrAt(g.o.Base, i) }

// Port is the port of the sockets' shard s (that of its GMs).
func (g *Generator) Port(s int) uint16 { return g.shards[s].conn.Port() }

// Run makes the members' key pairs ahead (Options.KeysAhead), then plays
// the GMs until ctx ends.
func (g *Generator) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := g.makeKeys(ctx); err != nil {
		g.close()
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(g.shards))
	for k, s := range g.shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[k] = s.run(ctx); errs[k] != nil {
				cancel()
			}
		}()
	}
	go g.watchHeap(ctx)
	stop := context.AfterFunc(ctx, g.close)
	defer stop()
	wg.Wait()
	g.close()
	return errors.Join(errs...)
}

// makeKeys fills each shard's key pool with its share of
// Options.KeysAhead, the shards in parallel, touches the stage's heap
// (Options.Prefault), and marks the generator ready (Stats.ReadyAt,
// ReadyCPU).
func (g *Generator) makeKeys(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(g.shards))
	for k, s := range g.shards {
		n := g.o.KeysAhead / len(g.shards)
		if k < g.o.KeysAhead%len(g.shards) {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = s.keys.fill(ctx, n)
			g.Stats.KeyPairsAhead.Add(int64(len(s.keys.pairs)))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if g.o.Prefault {
		g.Stats.Prefaulted.Store(int64(prefault()))
	}
	g.Stats.ReadyCPU.Store(int64(processCPU()))
	g.Stats.ReadyAt.Store(Monotonic())
	return nil
}

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// close closes the shards' sockets and the multicast ones.
func (g *Generator) close() {
	for _, s := range g.shards {
		s.conn.Close()
	}
	g.closeMulticast()
}

// packet is a datagram for a shard: to GM idx, or to every GM holding
// its KEK (multicast).
type packet struct {
	idx       int32
	multicast bool
	from, to  netip.AddrPort
	data      []byte
}

// recvBatch is the most datagrams one read of a shard's socket returns.
const recvBatch = 32

// route is the GM a datagram to dst is for: the offset of dst from base,
// if it is one of the n GMs' and the datagram has an ISAKMP v1 header. It
// returns -1 when dst is no GM's, and false for anything else.
func route(base netip.Addr, n int, dst netip.Addr, data []byte) (int, bool) {
	i, ok := addrIndex(base, dst)
	if !ok || i >= uint32(n) {
		return -1, false
	}
	if _, err := isakmp.ParseHeader(data); err != nil {
		return int(i), false
	}
	return int(i), true
}

// joinMulticast opens the process's one socket for a multicast group the
// first time a GM is told to join it; every datagram on it goes to every
// shard.
func (g *Generator) joinMulticast(ctx context.Context, group netip.AddrPort) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.mcast[group]; ok || !group.IsValid() || g.mcast == nil {
		return
	}
	c, err := mcast.Listen(group, g.o.Interface)
	if err != nil {
		g.mcast[group] = nil
		return
	}
	g.mcast[group] = c
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			g.Stats.MulticastIn.Add(1)
			data := append([]byte(nil), buf[:n]...)
			if _, err := isakmp.ParseHeader(data); err != nil {
				g.Stats.DropMalformed.Add(1)
				continue
			}
			for _, s := range g.shards {
				select {
				case s.mcast <- packet{idx: -1, multicast: true, from: from, to: group, data: data}:
				case <-ctx.Done():
					return
				}
				s.wake()
			}
		}
	}()
}

func (g *Generator) closeMulticast() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.mcast {
		if c != nil {
			c.Close()
		}
	}
	g.mcast = nil
}

// watchHeap measures the live heap per GM once every GM has registered:
// what a simulated GM costs the generator.
func (g *Generator) watchHeap(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if g.Stats.Registered.Load() == int64(g.o.Members) {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			g.Stats.HeapPerMember.Store(int64(ms.HeapAlloc) / int64(g.o.Members))
			return
		}
	}
}
