package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/isakmp"
)

// `groupvpn bench coop` (issue 16, SPEC C3): how long a primary key server
// takes to synchronise a member list of N members to its secondaries, and
// how many octets it sends, beside a ceiling measured in the same run.
//
// What is measured: the primary holds N members (addresses and versions,
// one in ten announcing 1.0.1); it cuts the list into MEMBERS parts
// (isakmp.SplitMembers, PerPart entries each: 140 fit a 1500-octet MTU),
// and sends each part to every secondary as a real announcement (exchange
// 240: SEQ, ID, COOP, MEMBERS) sealed in that secondary's KS-KS phase-1 SA
// (gdoi.SealANN: AES-256-CBC, HMAC-SHA-256 HASH) over real UDP on
// 127.0.0.0/8; each secondary, on a goroutine of its own, parses every
// datagram (isakmp.ParseMessage), opens it (gdoi.OpenANN: HASH checked,
// decrypted, the ANN parsed) and applies the part to its copy of the list.
// The time is from the first send to the last secondary holding the whole
// list; octets are the UDP payloads the primary sent. At most Window
// datagrams are in flight to each secondary (the loopback socket's receive
// buffer holds about 140 such datagrams). The phase-1 SAs are set up
// beforehand (main mode in memory, ECDH group 19), and the members are
// injected into the primary as values: neither registrations nor the
// nodes' event loops are part of the figure (registering 100,000 real
// members is issue 18's load generator).
//
// The ceiling: the same number of datagrams of the same sizes over the same
// sockets with the same window, neither sealed nor opened nor parsed. The
// crypto alone (sealing and opening the same ANNs in memory) is shown too.

// COOPSyncOptions configure one synchronisation.
type COOPSyncOptions struct {
	KeyServers int // 2 or 3: the primary and 1 or 2 secondaries
	Members    int
	PerPart    int // entries per MEMBERS part; 0: 140
	Window     int // datagrams in flight per secondary; 0: 64
	// Base is the first key server's address (0: 127.0.4.1); the others
	// follow it.
	Base netip.Addr
}

// COOPSyncResult is what one synchronisation measured.
type COOPSyncResult struct {
	KeyServers, Members, Parts int
	Octets                     int64         // UDP payload octets the primary sent, to every secondary
	Sync                       time.Duration // first send to the last secondary holding the whole list
	Ceiling                    time.Duration // the same datagrams over the same sockets, unprotected
	Crypto                     time.Duration // sealing and opening the same ANNs in memory, no I/O
}

// coopPeer is one secondary: its socket, its side of the KS-KS SA, the
// primary's side, and what it received.
type coopPeer struct {
	conn    *net.UDPConn
	addr    netip.AddrPort
	primary *ike.SA // the primary's side of the SA with this peer
	own     *ike.SA // this peer's side
	got     atomic.Int64
	done    chan struct{}
	err     error
	members map[netip.Addr]isakmp.SWVersion
}

// COOPSync runs one synchronisation and its ceiling.
func COOPSync(ctx context.Context, o COOPSyncOptions) (COOPSyncResult, error) {
	if o.KeyServers < 2 || o.KeyServers > 3 {
		return COOPSyncResult{}, fmt.Errorf("bench coop: %d key servers; want 2 or 3", o.KeyServers)
	}
	if o.PerPart <= 0 {
		o.PerPart = 140
	}
	if o.Window <= 0 {
		o.Window = 64
	}
	if !o.Base.IsValid() {
		o.Base = netip.MustParseAddr("127.0.4.1")
	}
	r := COOPSyncResult{KeyServers: o.KeyServers, Members: o.Members}
	entries := make([]isakmp.Member, o.Members)
	for i := range entries {
		v := isakmp.SWVersion{Major: 1, Minor: 0, Mini: 2}
		if i%10 == 9 {
			v.Mini = 1
		}
		entries[i] = isakmp.Member{Op: isakmp.MemberAdd, Addr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Version: v}
	}
	parts, err := isakmp.SplitMembers(isakmp.MembersFull, 0, 1, uint32(o.Members), entries, o.PerPart)
	if err != nil {
		return r, err
	}
	r.Parts = len(parts)
	primAddr := o.Base
	prim, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(primAddr, 0)))
	if err != nil {
		return r, fmt.Errorf("bench coop: the primary's socket: %w", err)
	}
	defer prim.Close()
	prim.SetWriteBuffer(4 << 20)
	var peers []*coopPeer
	defer func() {
		for _, p := range peers {
			p.conn.Close()
		}
	}()
	a := primAddr
	for range o.KeyServers - 1 {
		a = a.Next()
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
		if err != nil {
			return r, fmt.Errorf("bench coop: a secondary's socket: %w", err)
		}
		c.SetReadBuffer(4 << 20)
		sp, ss, err := coopPhase1(primAddr, a)
		if err != nil {
			c.Close()
			return r, err
		}
		peers = append(peers, &coopPeer{conn: c, addr: c.LocalAddr().(*net.UDPAddr).AddrPort(), primary: sp, own: ss})
	}
	ann := func(i int) *isakmp.ANN {
		return &isakmp.ANN{Seq: uint32(i + 1), Group: isakmp.GroupID(89),
			COOP: &isakmp.COOP{Version: isakmp.SWVersion{Major: 1, Minor: 0, Mini: 2}, Role: isakmp.RolePrimary, Priority: 100,
				Address: primAddr, PeriodMS: 20_000, DeadMS: 60_000, MembersGen: 1},
			Members: parts[i]}
	}

	// The synchronisation.
	sizes := make([][]int, len(peers)) // the datagrams' sizes, for the ceiling
	start := time.Now()
	for _, p := range peers {
		p.done, p.members = make(chan struct{}), make(map[netip.Addr]isakmp.SWVersion, o.Members)
		go p.receive(len(parts), o.Members)
	}
	for i := range parts {
		for j, p := range peers {
			msg, err := gdoi.SealANN(p.primary, ann(i), nil)
			if err != nil {
				return r, err
			}
			if err := waitWindow(ctx, p, int64(i), o.Window); err != nil {
				return r, err
			}
			if _, err := prim.WriteToUDPAddrPort(msg, p.addr); err != nil {
				return r, fmt.Errorf("bench coop: send: %w", err)
			}
			r.Octets += int64(len(msg))
			sizes[j] = append(sizes[j], len(msg))
		}
	}
	for _, p := range peers {
		if err := waitDone(ctx, p, len(parts)); err != nil {
			return r, err
		}
		if p.err != nil {
			return r, p.err
		}
		if len(p.members) != o.Members {
			return r, fmt.Errorf("bench coop: a secondary holds %d members of %d", len(p.members), o.Members)
		}
		for _, e := range []isakmp.Member{entries[0], entries[len(entries)-1]} {
			if p.members[e.Addr] != e.Version {
				return r, fmt.Errorf("bench coop: a secondary holds %s as version %s, not %s", e.Addr, p.members[e.Addr], e.Version)
			}
		}
	}
	r.Sync = time.Since(start)

	// The ceiling: the same datagrams' sizes, unprotected, not parsed.
	start = time.Now()
	for _, p := range peers {
		p.got.Store(0)
		p.done = make(chan struct{})
		go p.count(len(parts))
	}
	buf := make([]byte, 65536)
	for i := range parts {
		for j, p := range peers {
			if err := waitWindow(ctx, p, int64(i), o.Window); err != nil {
				return r, err
			}
			if _, err := prim.WriteToUDPAddrPort(buf[:sizes[j][i]], p.addr); err != nil {
				return r, fmt.Errorf("bench coop: send: %w", err)
			}
		}
	}
	for _, p := range peers {
		if err := waitDone(ctx, p, len(parts)); err != nil {
			return r, err
		}
	}
	r.Ceiling = time.Since(start)

	// The crypto alone.
	start = time.Now()
	for i := range parts {
		for _, p := range peers {
			msg, err := gdoi.SealANN(p.primary, ann(i), nil)
			if err != nil {
				return r, err
			}
			m, err := isakmp.ParseMessage(msg)
			if err != nil {
				return r, err
			}
			if _, err := gdoi.OpenANN(p.own, m); err != nil {
				return r, err
			}
		}
	}
	r.Crypto = time.Since(start)
	return r, nil
}

// waitWindow waits until fewer than window datagrams are in flight to p
// (sent is the number sent so far).
func waitWindow(ctx context.Context, p *coopPeer, sent int64, window int) error {
	deadline := time.Now().Add(30 * time.Second)
	for sent-p.got.Load() >= int64(window) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench coop: a secondary received %d of %d datagrams (lost on loopback?)", p.got.Load(), sent)
		}
		time.Sleep(20 * time.Microsecond)
	}
	return nil
}

// waitDone waits for p's receiver to finish.
func waitDone(ctx context.Context, p *coopPeer, parts int) error {
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return fmt.Errorf("bench coop: a secondary received %d of %d parts within 30 s", p.got.Load(), parts)
	}
}

// receive opens every ANN and applies its MEMBERS part until every part
// arrived.
func (p *coopPeer) receive(parts, members int) {
	defer close(p.done)
	seen := make([]bool, parts)
	left := parts
	buf := make([]byte, 65536)
	for left > 0 {
		n, err := p.conn.Read(buf)
		if err != nil {
			p.err = fmt.Errorf("bench coop: receive: %w", err)
			return
		}
		m, err := isakmp.ParseMessage(buf[:n])
		if err != nil {
			p.err = fmt.Errorf("bench coop: parse: %w", err)
			return
		}
		a, err := gdoi.OpenANN(p.own, m)
		if err != nil {
			p.err = fmt.Errorf("bench coop: open: %w", err)
			return
		}
		mp := a.Members
		if mp == nil || int(mp.Parts) != parts || int(mp.Total) != members || int(mp.Part) >= parts {
			p.err = errors.New("bench coop: an ANN without the expected MEMBERS part")
			return
		}
		if !seen[mp.Part] {
			seen[mp.Part] = true
			left--
			for _, e := range mp.Entries {
				p.members[e.Addr] = e.Version
			}
		}
		p.got.Add(1)
	}
}

// count counts datagrams (the ceiling's receiver).
func (p *coopPeer) count(parts int) {
	defer close(p.done)
	buf := make([]byte, 65536)
	for p.got.Load() < int64(parts) {
		if _, err := p.conn.Read(buf); err != nil {
			return
		}
		p.got.Add(1)
	}
}

// coopPhase1 sets up the KS-KS phase-1 SA between a and b in memory (main
// mode, PSK, AES-256, SHA-256, ECDH group 19, the GDOI DOI) and returns
// a's side and b's.
func coopPhase1(a, b netip.Addr) (*ike.SA, *ike.SA, error) {
	s := ike.Suite{KeyBits: 256, Hash: ike.SHA256, Group: 19, Auth: ike.AuthPSK}
	cfg := &ike.Config{Suites: []ike.Suite{s}, DOI: isakmp.DOIGDOI,
		Creds: ike.Credentials{PSK: func(netip.Addr) ([]byte, bool) { return []byte("bench-coop"), true }}}
	aa, ab := netip.AddrPortFrom(a, 848), netip.AddrPortFrom(b, 848)
	ea, err := ike.NewEndpoint(cfg, aa, ike.Limits{})
	if err != nil {
		return nil, nil, err
	}
	eb, err := ike.NewEndpoint(cfg, ab, ike.Limits{})
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	_, out, err := ea.Initiate(ab, now)
	if err != nil {
		return nil, nil, err
	}
	ike.Exchange(ea, eb, ea, out, now)
	if len(ea.SAs()) != 1 || len(eb.SAs()) != 1 {
		return nil, nil, errors.New("bench coop: the KS-KS phase 1 did not complete")
	}
	return ea.SAs()[0], eb.SAs()[0], nil
}

// COOPSizes are the runs of `groupvpn bench coop`: 2 and 3 key servers,
// 10,000 and 100,000 members.
var COOPSizes = []COOPSyncOptions{{KeyServers: 2, Members: 10_000}, {KeyServers: 3, Members: 10_000},
	{KeyServers: 2, Members: 100_000}, {KeyServers: 3, Members: 100_000}}

// COOP runs the synchronisations and prints the table.
func COOP(ctx context.Context, out io.Writer, runs []COOPSyncOptions) error {
	fmt.Fprintf(out, "scenario coop: a primary synchronises its member list to its secondaries: ANNs (exchange 240) with\n"+
		"MEMBERS parts of 140 entries, each sealed in the KS-KS phase-1 SA (AES-256-CBC, HMAC-SHA-256) and sent over\n"+
		"UDP on 127.0.0.0/8, at most 64 in flight per secondary; each secondary parses, opens and applies every part.\n"+
		"Members are injected into the primary (no registrations); the ceiling sends the same datagram sizes unprotected.\n")
	fmt.Fprintf(out, "%4s %9s %6s %12s %10s %10s %8s %10s %12s\n", "KSs", "members", "parts", "octets", "sync", "ceiling", "x ceil", "crypto", "members/s")
	for _, o := range runs {
		r, err := COOPSync(ctx, o)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%4d %9d %6d %12d %10s %10s %8.1f %10s %12.0f\n", r.KeyServers, r.Members, r.Parts, r.Octets,
			r.Sync.Round(time.Microsecond*100), r.Ceiling.Round(time.Microsecond*100), float64(r.Sync)/float64(max(r.Ceiling, 1)),
			r.Crypto.Round(time.Microsecond*100), float64(r.Members)/r.Sync.Seconds())
	}
	fmt.Fprintf(out, "octets: UDP payloads the primary sent to all its secondaries; sync: first send to the last secondary\n"+
		"holding every member; crypto: sealing and opening the same ANNs in memory, no I/O.\n")
	return nil
}
