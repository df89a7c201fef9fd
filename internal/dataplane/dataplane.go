// Package dataplane is the userspace forwarding engine of a group member
// (a router): it reads clear packets from a TUN device, looks them up in the
// group policy (first match, sadb.Lookup), seals the protected ones with the
// group's sending TEK (internal/esp, tunnel mode with address preservation)
// and sends them on its Link; it reads ESP for the group's SPIs from the
// Link, opens it, checks the inner packet against the SA's group policy and
// writes it to the TUN device, from where the kernel forwards it to the host
// behind the GM. The Link is a RawLink (raw IPv4 sockets: ESP as IP protocol
// 50 with the preserved addresses on the wire) unless Config.Link gives
// another, such as a UDPLink (ESP in UDP, RFC 3948: `groupvpn lab`).
//
// With address preservation the outer destination of an incoming ESP packet
// is a host behind the GM, not the GM: the kernel would forward it.
// Routes.Install adds the Linux policy routing that delivers all ESP locally
// instead, where the engine's raw IPPROTO_ESP socket reads it; the engine
// marks its own outer packets so that they are routed
// by the main table rather than back into the TUN device.
//
// The TUN device's MTU must leave room for the ESP overhead on the links
// towards the core (at most 57 octets with AES-GCM, 77 with AES-CBC and
// HMAC-SHA-256-128, 12 more with time-based anti-replay): 1400 on
// 1500-octet links. The engine's outer packets
// keep the inner DF bit; one too big for the outgoing link is refused by
// the kernel and counted as a send error, and the hosts learn the TUN's
// MTU by path MTU discovery as the kernel routes into it.
//
// One goroutine per direction; the hot path takes no lock: the keys and
// policy are a snapshot published through an atomic pointer, rebuilt by
// Refresh (call it when the SA database changes, or let Run poll).
package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/groupvpn/groupvpn/internal/esp"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/isakmp"
)

// Keys is what the engine reads its TEKs and policy from; sadb.Memory and
// tmd.MemoryBackend (whose Notify can call Refresh) implement it.
type Keys interface {
	TEKs() []sadb.TEK
	Policy(group string) []sadb.PolicyEntry
	FailMode(group string) sadb.FailMode
}

// Config is what New needs.
type Config struct {
	Keys Keys
	// TUN is the device the protected prefixes are routed into.
	TUN tun.Device
	// Link is the network side; nil: a RawLink opened by New with Mark.
	// The engine owns it from New on and closes it in Close.
	Link Link
	// Mark is the SO_MARK of the raw send socket (Routes' FwMark): the
	// engine's own packets are routed by the main table. 0: no mark.
	Mark uint32
	// Now is the clock (nil: time.Now); read once per batch.
	Now func() time.Time
	// Rand supplies CBC IVs (nil: crypto/rand).
	Rand io.Reader
	// Groups are the groups configured on the GM: their policy and fail
	// mode apply even while the engine holds no TEK of theirs (fail-close
	// before registration). A group with TEKs applies in any case.
	Groups []string
	// Poll, when positive, makes Run refresh the snapshot that often in
	// addition to explicit Refresh calls.
	Poll time.Duration
}

// Stats are the engine's counters. Every drop has one.
type Stats struct {
	Encaps         uint64 // packets sealed and sent as ESP
	Decaps         uint64 // ESP packets opened and delivered to the TUN
	AuthFailures   uint64 // ESP whose ICV did not verify
	Replay         uint64 // ESP replayed or outside the window
	NoSA           uint64 // ESP for an SPI of no TEK held (or one no longer accepted)
	FailCloseDrops uint64 // covered packets dropped: no usable TEK, fail-close
	FailOpenClear  uint64 // covered packets sent in the clear: no usable TEK, fail-open
	ReceiveOnly    uint64 // covered packets sent in the clear: the group's TEKs are receive-only
	PolicyMismatch uint64 // opened packets no Protect entry of the SA's group selects
	Bypass         uint64 // packets a Bypass (deny) entry passes in the clear
	NotGroup       uint64 // packets no group's policy selects, sent in the clear
	Malformed      uint64 // packets from the TUN or the network that are not IPv4 the engine handles
	SealErrors     uint64 // packets the sending SA refused (too big, sequence numbers exhausted)
	SendErrors     uint64 // packets the link could not send
	TUNErrors      uint64 // writes to the TUN device that failed
	TooManySenders uint64 // authentic ESP from a new sender while the SA keeps its maximum of replay windows
	SocketDrops    uint64 // ESP the link lost: the engine's socket buffer was full
	TBAR           uint64 // ESP of a time-based anti-replay SA whose pseudotime is missing or outside the window
}

// Counter is one named counter of Stats, for show commands and metrics.
type Counter struct {
	Name  string // snake_case, stable
	Help  string
	Value uint64
}

// Counters lists every counter of s in a stable order.
func (s Stats) Counters() []Counter {
	return []Counter{
		{"encaps", "packets encapsulated (encrypted and digested) and sent", s.Encaps},
		{"decaps", "packets decapsulated (verified and decrypted) and delivered", s.Decaps},
		{"auth_failures", "ESP packets whose integrity check failed", s.AuthFailures},
		{"replay", "ESP packets replayed or outside the anti-replay window", s.Replay},
		{"no_sa", "ESP packets for an SPI of no TEK accepted", s.NoSA},
		{"fail_close_drops", "covered packets dropped while no TEK can send (fail-close)", s.FailCloseDrops},
		{"fail_open_clear", "covered packets sent in the clear while no TEK can send (fail-open)", s.FailOpenClear},
		{"receive_only_clear", "covered packets sent in the clear (receive-only SAs)", s.ReceiveOnly},
		{"policy_mismatch", "decrypted packets no permit entry of the SA's group selects", s.PolicyMismatch},
		{"bypass", "packets a deny entry passes in the clear", s.Bypass},
		{"not_group", "packets no group policy selects, passed in the clear", s.NotGroup},
		{"malformed", "packets that are not IPv4 the engine handles", s.Malformed},
		{"seal_errors", "packets the sending SA refused (too big, sequence numbers exhausted)", s.SealErrors},
		{"send_errors", "packets the network link could not send", s.SendErrors},
		{"tun_errors", "writes to the TUN device that failed", s.TUNErrors},
		{"too_many_senders", "ESP from a new sender while the SA keeps its maximum of replay windows", s.TooManySenders},
		{"socket_drops", "ESP dropped by the kernel: the engine's receive buffer was full", s.SocketDrops},
		{"tbar", "ESP packets whose pseudotime is missing or outside the time-based anti-replay window", s.TBAR},
	}
}

// stats are the live counters, atomics written by the two goroutines.
type stats struct {
	encaps, decaps, auth, replay, noSA, failClose, failOpen, recvOnly,
	mismatch, bypass, notGroup, malformed, sealErr, sendErr, tunErr, senders, tbar atomic.Uint64
}

// sa is one TEK with its engine SA.
type sa struct {
	tek sadb.TEK
	esp *esp.SA
	cnt *saCounters // kept across refreshes with esp
}

// saCounters are one SA's live counters.
type saCounters struct {
	encaps, encapsBytes, decaps, decapsBytes, replay, auth, tbar atomic.Uint64
}

// SACounters are one TEK's packet counters (`show crypto ipsec sa`); the
// byte counts are of the inner packets.
type SACounters struct {
	EncapsPackets uint64 `json:"encaps_packets"`
	EncapsBytes   uint64 `json:"encaps_bytes"`
	DecapsPackets uint64 `json:"decaps_packets"`
	DecapsBytes   uint64 `json:"decaps_bytes"`
	ReplayDrops   uint64 `json:"replay_drops"`
	AuthFailures  uint64 `json:"auth_failures"`
	TBARDrops     uint64 `json:"tbar_drops"` // pseudotime missing or outside the window
}

// SACounters returns the counters of the group's TEK with that SPI, and
// false when the engine holds no such TEK.
func (e *Engine) SACounters(group string, spi uint32) (SACounters, bool) {
	e.mu.Lock()
	s := e.sas[saKey{group, spi}]
	e.mu.Unlock()
	if s == nil {
		return SACounters{}, false
	}
	c := s.cnt
	return SACounters{
		EncapsPackets: c.encaps.Load(), EncapsBytes: c.encapsBytes.Load(),
		DecapsPackets: c.decaps.Load(), DecapsBytes: c.decapsBytes.Load(),
		ReplayDrops: c.replay.Load(), AuthFailures: c.auth.Load(), TBARDrops: c.tbar.Load(),
	}, true
}

// group is one group's policy and SAs in a snapshot.
type group struct {
	name   string
	policy []sadb.PolicyEntry
	fail   sadb.FailMode
	// send[i] are the candidate SAs of policy[i] (Protect entries), in
	// newestFirst order.
	send [][]*sa
	// older[i] are the group's other SAs, in newestFirst order: when
	// none of send[i] may send yet (a policy replace that changed the
	// entry's ACL, its new TEK waiting for its activation time), the
	// first of them whose own selector covers the packet seals it, as
	// the GM kept using the old SAs before the replace (SPEC P3).
	older [][]*sa
	// sync is the group's TEK with time-based anti-replay that brought
	// the latest pseudotime from the KS (its Pseudotime, PseudotimeAt);
	// the zero TEK when the group has none.
	sync sadb.TEK
}

// pseudotime is the GM's estimate of the group's KS pseudotime at now
// (SPEC T2): the latest value received plus the time since. Packets of
// TBAR SAs carry it (sender) and are checked against it (receiver).
func (g *group) pseudotime(now time.Time) time.Duration {
	return g.sync.PseudotimeNow(now)
}

// snapshot is what the hot path reads, immutable once published.
type snapshot struct {
	groups []*group
	bySPI  map[uint32]spiEntry
}

type spiEntry struct {
	sa    *sa
	group *group
}

// Engine forwards packets between a TUN device and a Link.
type Engine struct {
	cfg  Config
	now  func() time.Time
	link Link // nil only in tests of the decisions
	mtu  int
	snap atomic.Pointer[snapshot]
	st   stats

	mu   sync.Mutex // Refresh
	sas  map[saKey]*sa
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

type saKey struct {
	group string
	spi   uint32
}

// New opens the raw link (unless Config.Link gives one) in the calling
// thread's network namespace and builds the first snapshot. Run starts
// forwarding; Close stops it and closes the link and the TUN device.
func New(cfg Config) (*Engine, error) {
	if cfg.Keys == nil || cfg.TUN == nil {
		return nil, errors.New("dataplane: Keys and TUN are required")
	}
	e := &Engine{cfg: cfg, now: cfg.Now, link: cfg.Link, sas: map[saKey]*sa{}, stop: make(chan struct{})}
	if e.now == nil {
		e.now = time.Now
	}
	if e.link == nil {
		l, err := NewRawLink(cfg.Mark)
		if err != nil {
			return nil, err
		}
		e.link = l
	}
	// The device's MTU is read here, in the namespace (the TUN package
	// asks through a socket of the calling thread).
	var err error
	if e.mtu, err = cfg.TUN.MTU(); err != nil {
		e.link.Close()
		return nil, fmt.Errorf("dataplane: TUN MTU: %w", err)
	}
	if err := e.Refresh(); err != nil {
		e.link.Close()
		return nil, err
	}
	return e, nil
}

// Stats returns a copy of the counters.
func (e *Engine) Stats() Stats {
	s := &e.st
	return Stats{
		Encaps: s.encaps.Load(), Decaps: s.decaps.Load(), AuthFailures: s.auth.Load(),
		Replay: s.replay.Load(), NoSA: s.noSA.Load(), FailCloseDrops: s.failClose.Load(),
		FailOpenClear: s.failOpen.Load(), ReceiveOnly: s.recvOnly.Load(),
		PolicyMismatch: s.mismatch.Load(), Bypass: s.bypass.Load(), NotGroup: s.notGroup.Load(),
		Malformed: s.malformed.Load(), SealErrors: s.sealErr.Load(), SendErrors: s.sendErr.Load(),
		TUNErrors: s.tunErr.Load(), TooManySenders: s.senders.Load(), TBAR: s.tbar.Load(),
		SocketDrops: e.linkDrops(),
	}
}

func (e *Engine) linkDrops() uint64 {
	if e.link == nil {
		return 0
	}
	return e.link.Drops()
}

// Counters lists the engine's counters (Stats().Counters()).
func (e *Engine) Counters() []Counter { return e.Stats().Counters() }

// Refresh rebuilds the snapshot from Keys: call it whenever TEKs, policy or
// fail mode change. An SA kept across a refresh keeps its engine state
// (sequence numbers, replay windows).
func (e *Engine) Refresh() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	teks := e.cfg.Keys.TEKs()
	next := map[saKey]*sa{}
	byGroup := map[string][]*sa{}
	for _, g := range e.cfg.Groups {
		byGroup[g] = nil
	}
	var errs []error
	for _, t := range teks {
		k := saKey{t.Group, t.SPI}
		s := e.sas[k]
		if s == nil || !sameKeys(s.tek, t) {
			es, err := esp.New(t, esp.Config{Rand: e.cfg.Rand})
			if err != nil {
				errs = append(errs, fmt.Errorf("dataplane: TEK %s/%#08x: %w", t.Group, t.SPI, err))
				continue
			}
			s = &sa{tek: t, esp: es, cnt: &saCounters{}}
		} else {
			s = &sa{tek: t, esp: s.esp, cnt: s.cnt} // new times, same engine state
		}
		next[k] = s
		byGroup[t.Group] = append(byGroup[t.Group], s)
	}
	snap := &snapshot{bySPI: map[uint32]spiEntry{}}
	names := make([]string, 0, len(byGroup))
	for g := range byGroup {
		names = append(names, g)
	}
	slices.Sort(names)
	for _, name := range names {
		sas := byGroup[name]
		slices.SortStableFunc(sas, newestFirst)
		g := &group{name: name, policy: e.cfg.Keys.Policy(name), fail: e.cfg.Keys.FailMode(name)}
		for _, s := range sas {
			if s.tek.ReplayMethod == isakmp.ReplayTime && s.tek.PseudotimeAt.After(g.sync.PseudotimeAt) {
				g.sync = s.tek
			}
		}
		if len(g.policy) == 0 {
			g.policy = selectorPolicy(sas)
		}
		g.send = make([][]*sa, len(g.policy))
		g.older = make([][]*sa, len(g.policy))
		for i, p := range g.policy {
			if p.Action != sadb.Protect {
				continue
			}
			for _, s := range sas {
				if sameSelector(s.tek, p) {
					g.send[i] = append(g.send[i], s)
				} else if s.tek.Src.IsValid() && s.tek.Dst.IsValid() {
					g.older[i] = append(g.older[i], s)
				}
			}
			if len(g.send[i]) == 0 {
				g.send[i], g.older[i] = sas, nil // the group's TEK covers its whole policy
			}
		}
		snap.groups = append(snap.groups, g)
		for _, s := range sas {
			// SPIs are chosen by the KSs; two groups sharing one would
			// be a KS misconfiguration: the first group keeps it.
			if _, dup := snap.bySPI[s.tek.SPI]; !dup {
				snap.bySPI[s.tek.SPI] = spiEntry{sa: s, group: g}
			}
		}
	}
	e.sas = next
	e.snap.Store(snap)
	return errors.Join(errs...)
}

// newestFirst orders a group's SAs for sending: the latest SendFrom
// first, and among equals (a registration's TEKs that all send at once)
// the one that ends last, the newest; before, equals kept the SA
// database's SPI order, and a member could send with the oldest TEK until
// its very end, which other members, told by a rekey's deactivation
// delay, may have reached before.
func newestFirst(a, b *sa) int {
	if c := b.tek.SendFrom.Compare(a.tek.SendFrom); c != 0 {
		return c
	}
	end := func(t sadb.TEK) time.Time {
		if e := t.Ends(); !e.IsZero() {
			return e
		}
		return time.Unix(1<<62, 0) // never ends: the last
	}
	return end(b.tek).Compare(end(a.tek))
}

// selectorPolicy is the policy of a group whose SA database keeps none:
// one Protect entry per distinct TEK selector, newest TEK first.
func selectorPolicy(sas []*sa) []sadb.PolicyEntry {
	var p []sadb.PolicyEntry
	for _, s := range sas {
		e := sadb.PolicyEntry{Action: sadb.Protect, IPProto: s.tek.IPProto, Src: s.tek.Src, Dst: s.tek.Dst,
			SrcPort: s.tek.SrcPort, DstPort: s.tek.DstPort, SPI: s.tek.SPI}
		if !e.Src.IsValid() || !e.Dst.IsValid() {
			continue // no selector: nothing to protect
		}
		if !slices.ContainsFunc(p, func(q sadb.PolicyEntry) bool { return sameSelector(s.tek, q) }) {
			p = append(p, e)
		}
	}
	return p
}

func sameKeys(a, b sadb.TEK) bool {
	return a.Transform == b.Transform && a.KeyBits == b.KeyBits && a.AuthAlg == b.AuthAlg &&
		string(a.EncKey) == string(b.EncKey) && string(a.AuthKey) == string(b.AuthKey) &&
		slices.Equal(a.SenderIDs, b.SenderIDs) && a.SIDBits == b.SIDBits &&
		a.ReplayMethod == b.ReplayMethod && a.ReplayWindow == b.ReplayWindow
}

func sameSelector(t sadb.TEK, p sadb.PolicyEntry) bool {
	return t.Src == p.Src && t.Dst == p.Dst && t.IPProto == p.IPProto && t.SrcPort == p.SrcPort && t.DstPort == p.DstPort
}

// sending returns the SA to seal with at now. The newest SA that is
// accepted and whose SendFrom (ATD) has come decides: a receive-only one
// means the group sends in the clear (recvOnly), even when an older SA
// could still seal (receive-only turned on by a rekey applies from the new
// TEK's ATD, not when the old TEK expires); one that cannot seal (a
// counter-mode TEK without sender IDs) gives way to the next older. A
// receive-only SA whose SendFrom has not come yet only decides when no SA
// can send at all.
func sending(cands []*sa, now time.Time) (s *sa, recvOnly bool) {
	for _, c := range cands {
		if !accepting(c.tek, now) {
			continue
		}
		if c.tek.SendFrom.After(now) {
			if c.tek.ReceiveOnly {
				recvOnly = true
			}
			continue
		}
		if c.tek.ReceiveOnly {
			return nil, true
		}
		if !canSeal(&c.tek) {
			continue
		}
		return c, false
	}
	return nil, recvOnly
}

// covering returns the first SA of cands that may send at now and whose
// own traffic selector covers f, or nil.
func covering(cands []*sa, now time.Time, f flow) *sa {
	for _, c := range cands {
		t := &c.tek
		if t.ReceiveOnly || t.SendFrom.After(now) || !accepting(*t, now) || !canSeal(t) {
			continue
		}
		sel := sadb.PolicyEntry{Action: sadb.Protect, IPProto: t.IPProto, Src: t.Src, Dst: t.Dst, SrcPort: t.SrcPort, DstPort: t.DstPort}
		if sel.Matches(f.proto, f.src, f.dst, f.sport, f.dport) {
			return c
		}
	}
	return nil
}

// canSeal reports whether the GM can send with t: a counter-mode TEK
// (AES-GCM) needs its RFC 6054 sender IDs, which a GM that got it in a
// rekey before any registration gave it some lacks until it registers
// again (gm.Installed.NeedSIDs), and one a rekey replaced, handed out at
// registration, never has (gm.InstallHolding); it only opens packets.
func canSeal(t *sadb.TEK) bool {
	return isakmp.ESPTransform(t.Transform) != isakmp.ESPAESGCM16 || len(t.SenderIDs) > 0
}

// accepting reports whether a TEK may open packets at now.
func accepting(t sadb.TEK, now time.Time) bool {
	if !t.Expires.IsZero() && !now.Before(t.Expires) {
		return false
	}
	return t.Deactivate.IsZero() || now.Before(t.Deactivate)
}

// Run starts the two forwarding goroutines (and the poller when Config.Poll
// is set) and returns at once.
func (e *Engine) Run() error {
	e.wg.Add(2)
	go e.outbound(e.mtu)
	go e.inbound()
	if e.cfg.Poll > 0 {
		e.wg.Add(1)
		go e.poll()
	}
	return nil
}

// Close stops the goroutines and closes the link and the TUN device
// (which the engine owns from New on).
func (e *Engine) Close() error {
	var err error
	e.once.Do(func() {
		close(e.stop)
		err = e.cfg.TUN.Close() // wakes the outbound read
		e.wg.Wait()
		err = errors.Join(err, e.link.Close())
	})
	return err
}

func (e *Engine) stopped() bool {
	select {
	case <-e.stop:
		return true
	default:
		return false
	}
}

func (e *Engine) poll() {
	defer e.wg.Done()
	tk := time.NewTicker(e.cfg.Poll)
	defer tk.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-tk.C:
			_ = e.Refresh() // a TEK the engine cannot use stays unused
		}
	}
}

// vnetHdr is the virtio-net header the wireguard TUN device keeps before
// each packet when offloads are on.
const vnetHdr = 10

// headroom is the room kept before each packet read from the TUN device for
// the outer IPv4 header, ESP header and the largest IV (CBC: 16 octets).
const headroom = 64

// tailroom is the room kept after each packet for padding and the ICV.
const tailroom = 64

// outbound reads clear packets from the TUN device and sends them, sealed
// or clear, on the link.
func (e *Engine) outbound(mtu int) {
	defer e.wg.Done()
	n := e.cfg.TUN.BatchSize()
	if n < 1 {
		n = 1
	}
	if mtu < 1280 {
		mtu = 1280
	}
	off := vnetHdr + headroom
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, off+mtu+tailroom)
	}
	sizes := make([]int, n)
	outs := make([][]byte, n)
	for {
		cnt, err := e.cfg.TUN.Read(bufs, sizes, off)
		if e.stopped() {
			return
		}
		if err != nil && cnt == 0 {
			if errors.Is(err, tun.ErrTooManySegments) {
				e.st.malformed.Add(1)
				continue
			}
			if errors.Is(err, io.EOF) || errors.Is(err, unix.EBADF) || isClosed(err) {
				return
			}
			time.Sleep(10 * time.Millisecond) // a transient error: don't spin
			continue
		}
		snap := e.snap.Load()
		now := e.now()
		k := 0
		for i := 0; i < cnt; i++ {
			buf := bufs[i]
			pkt := buf[off : off+sizes[i]]
			out, ok := e.encap(snap, now, buf[:off], pkt)
			if !ok {
				continue
			}
			outs[k] = out
			k++
		}
		if k > 0 {
			if failed := e.link.Send(outs[:k]); failed > 0 {
				e.st.sendErr.Add(uint64(failed))
			}
		}
	}
}

func isClosed(err error) bool {
	return errors.Is(err, os.ErrClosed) || errors.Is(err, unix.EBADFD) || errors.Is(err, io.ErrClosedPipe)
}

// encap decides what to do with one clear packet and returns what to send:
// the packet itself (clear) or its ESP packet built in front of it
// (head is the room before pkt in the same buffer).
func (e *Engine) encap(snap *snapshot, now time.Time, head, pkt []byte) ([]byte, bool) {
	f, ok := parse(pkt)
	if !ok {
		e.st.malformed.Add(1)
		return nil, false
	}
	for _, g := range snap.groups {
		for i := range g.policy {
			p := &g.policy[i]
			if !p.Matches(f.proto, f.src, f.dst, f.sport, f.dport) {
				continue
			}
			if p.Action != sadb.Protect {
				e.st.bypass.Add(1)
				return pkt, true
			}
			s, ro := sending(g.send[i], now)
			if s == nil && !ro && len(g.older[i]) > 0 {
				s = covering(g.older[i], now, f)
			}
			if s == nil {
				switch {
				case ro:
					e.st.recvOnly.Add(1)
					return pkt, true
				case g.fail == sadb.FailClose:
					e.st.failClose.Add(1)
					return nil, false
				default:
					e.st.failOpen.Add(1)
					return pkt, true
				}
			}
			h := s.esp.Headroom()
			dst := head[len(head)-h : len(head)-h]
			out, err := s.esp.SealAt(dst, pkt, g.pseudotime(now))
			if err != nil {
				e.st.sealErr.Add(1)
				return nil, false
			}
			e.st.encaps.Add(1)
			s.cnt.encaps.Add(1)
			s.cnt.encapsBytes.Add(uint64(len(pkt)))
			return out, true
		}
	}
	e.st.notGroup.Add(1)
	return pkt, true
}

// flow is what the policy selects on.
type flow struct {
	proto        uint8
	src, dst     netip.Addr
	sport, dport uint16
}

// parse reads the selector fields of an IPv4 packet. Ports are those of
// TCP, UDP and SCTP first fragments; 0 otherwise.
func parse(p []byte) (flow, bool) {
	if len(p) < 20 || p[0]>>4 != 4 {
		return flow{}, false
	}
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:4]))
	if ihl < 20 || total < ihl || total > len(p) {
		return flow{}, false
	}
	f := flow{
		proto: p[9],
		src:   netip.AddrFrom4([4]byte(p[12:16])),
		dst:   netip.AddrFrom4([4]byte(p[16:20])),
	}
	fragOff := binary.BigEndian.Uint16(p[6:8]) & 0x1fff
	switch f.proto {
	case unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_SCTP:
		if fragOff == 0 && total >= ihl+4 {
			f.sport = binary.BigEndian.Uint16(p[ihl:])
			f.dport = binary.BigEndian.Uint16(p[ihl+2:])
		}
	}
	return f, true
}

// inbound reads ESP from the link, opens it and writes the inner packets
// to the TUN device in batches.
func (e *Engine) inbound() {
	defer e.wg.Done()
	n := e.cfg.TUN.BatchSize()
	if n < 1 {
		n = 1
	}
	const bufSize = 65536
	raw := make([][]byte, n)
	for i := range raw {
		raw[i] = make([]byte, bufSize)
	}
	out := make([][]byte, 0, n)
	sizes := make([]int, n)
	for !e.stopped() {
		// Blocks (about 100 ms at most) for the first packet, then takes
		// what else is queued.
		r, err := e.link.Receive(raw, sizes)
		if err != nil {
			if e.stopped() || isClosed(err) {
				return
			}
			time.Sleep(10 * time.Millisecond) // a transient error: don't spin
			continue
		}
		out = out[:0]
		for i := 0; i < r; i++ {
			if inner, start, ok := e.decap(raw[i][:sizes[i]]); ok {
				// The TUN device writes its header in the vnetHdr
				// octets before the packet (Open left the outer
				// headers there).
				out = append(out, raw[i][start-vnetHdr:start+len(inner)])
			}
		}
		if len(out) == 0 {
			continue
		}
		if _, err := e.cfg.TUN.Write(out, vnetHdr); err != nil {
			e.st.tunErr.Add(1)
		}
	}
}

// decap opens one ESP packet; it returns the inner packet and its offset in
// pkt.
func (e *Engine) decap(pkt []byte) ([]byte, int, bool) {
	spi, ok := esp.PacketSPI(pkt)
	if !ok {
		e.st.malformed.Add(1)
		return nil, 0, false
	}
	ent, ok := e.snap.Load().bySPI[spi]
	now := e.now()
	if !ok || !accepting(ent.sa.tek, now) {
		e.st.noSA.Add(1)
		return nil, 0, false
	}
	inner, err := ent.sa.esp.OpenAt(pkt, ent.group.pseudotime(now))
	switch err {
	case nil:
	case esp.ErrAuth:
		e.st.auth.Add(1)
		ent.sa.cnt.auth.Add(1)
		return nil, 0, false
	case esp.ErrReplay:
		e.st.replay.Add(1)
		ent.sa.cnt.replay.Add(1)
		return nil, 0, false
	case esp.ErrSenders:
		e.st.senders.Add(1)
		return nil, 0, false
	case esp.ErrTBAR:
		e.st.tbar.Add(1)
		ent.sa.cnt.tbar.Add(1)
		return nil, 0, false
	default:
		e.st.malformed.Add(1)
		return nil, 0, false
	}
	f, ok := parse(inner)
	if !ok {
		e.st.malformed.Add(1)
		return nil, 0, false
	}
	p, ok := sadb.Lookup(ent.group.policy, f.proto, f.src, f.dst, f.sport, f.dport)
	if !ok || p.Action != sadb.Protect {
		e.st.mismatch.Add(1)
		return nil, 0, false
	}
	e.st.decaps.Add(1)
	ent.sa.cnt.decaps.Add(1)
	ent.sa.cnt.decapsBytes.Add(uint64(len(inner)))
	return inner, cap(pkt) - cap(inner), true // inner is pkt[start:...]
}
