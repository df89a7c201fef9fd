package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/groupvpn/groupvpn/internal/coop"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/lab"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/store"
)

// `groupvpn bench coop --nodes`: the same synchronisation through the real
// key servers (lab.Start with KeyServers and State: isakmpd's node, its
// KS-KS IKE SA and its own announcements and member-list parts over real
// UDP on 127.0.0.0/8). The primary's N members are injected through its
// state file (internal/store, as a KS restarted after N registrations
// finds them): the lab runs once with one real member, every key server is
// stopped, N members are added to ks1's saved group, ks1 starts alone and
// becomes primary; then the secondaries start, and the time is from their
// start (their phase 1 with the primary included) until each lists the N
// members in `show crypto gdoi feature gm-removal` (polled); the octets
// are the UDP payloads ks1 sent to the other key servers meanwhile (its
// announcements, parts and phase-1 messages). The ceiling is the same
// octets in 1,400-octet datagrams between two loopback sockets, at most 64
// in flight.

// COOPNodesResult is one synchronisation through the nodes.
type COOPNodesResult struct {
	KeyServers, Members int
	Sync                time.Duration // the secondaries' start to the last one listing every member
	Transfer            time.Duration // ks1's first member-list part to the last secondary listing every member
	Octets, Datagrams   int64         // sent by the primary to the other key servers
	Ceiling             time.Duration
	Poll                time.Duration // how often the secondaries were asked
}

// countConn counts what a key server sends to the other key servers.
type countConn struct {
	*net.UDPConn
	peers     map[netip.Addr]bool
	on        atomic.Bool
	octets    atomic.Int64
	datagrams atomic.Int64
	first     atomic.Int64 // unix nanoseconds of the first datagram of 1,000 octets or more (a member-list part)
}

func (c *countConn) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	if c.on.Load() && c.peers[to.Addr()] {
		c.octets.Add(int64(len(b)))
		c.datagrams.Add(1)
		if len(b) >= 1000 {
			c.first.CompareAndSwap(0, time.Now().UnixNano())
		}
	}
	return c.UDPConn.WriteToUDPAddrPort(b, to)
}

var featureGM = regexp.MustCompile(`Number of lines which match regexp = (\d+)`)

// COOPNodes runs one synchronisation of members members from ks1 to
// keyServers-1 secondaries through the nodes, on port (0: 10860).
func COOPNodes(ctx context.Context, keyServers, members int, port uint16, out io.Writer) (COOPNodesResult, error) {
	r := COOPNodesResult{KeyServers: keyServers, Members: members, Poll: 50 * time.Millisecond}
	if members > 20_000 {
		r.Poll = 250 * time.Millisecond // each poll renders the list
	}
	if port == 0 {
		port = 10860
	}
	if out == nil {
		out = io.Discard
	}
	dir, err := os.MkdirTemp("", "groupvpn-bench-coop-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	var mu sync.Mutex
	conns := make([]*countConn, keyServers)
	peers := map[netip.Addr]bool{}
	for i := range keyServers {
		peers[lab.KSAddrN(i)] = true
	}
	l, err := lab.Start(ctx, lab.Options{Members: 1, KeyServers: keyServers, State: true, NoGMSockets: true, Port: port, Dir: dir,
		KSListenN: func(i int, a netip.AddrPort) (node.PacketConn, error) {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
			if err != nil {
				return nil, err
			}
			c.SetReadBuffer(4 << 20)
			cc := &countConn{UDPConn: c, peers: peers}
			mu.Lock()
			conns[i] = cc
			mu.Unlock()
			return cc, nil
		}})
	if err != nil {
		return r, err
	}
	defer l.Close()
	if err := l.Wait(ctx, io.Discard, 30*time.Second); err != nil {
		return r, err
	}
	if _, _, err := l.WaitPrimary(ctx, time.Minute); err != nil {
		return r, err
	}
	for i := range keyServers {
		if err := l.KillKSN(i); err != nil {
			return r, err
		}
	}
	if err := injectMembers(l.KSStatePath(0), members); err != nil {
		return r, err
	}
	fmt.Fprintf(out, "  %d members injected into ks1's state; ks1 starts alone...\n", members)
	if err := l.StartKSN(0); err != nil {
		return r, err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if rs := l.Roles(ctx); rs[0].Up && rs[0].Role == coop.Primary {
			break
		}
		if time.Now().After(deadline) {
			return r, errors.New("bench coop: ks1 did not become primary alone within a minute")
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	c0 := conns[0]
	mu.Unlock()
	c0.on.Store(true)
	start := time.Now()
	for i := 1; i < keyServers; i++ {
		if err := l.StartKSN(i); err != nil {
			return r, err
		}
	}
	for i := 1; i < keyServers; i++ {
		for {
			resp := l.KeyServer(i).Ctl.Exec(ctx, `show crypto gdoi feature gm-removal | count ^ *10\.`)
			if m := featureGM.FindStringSubmatch(resp.Text); m != nil {
				if n, _ := strconv.Atoi(m[1]); n >= members {
					break
				}
			}
			if time.Since(start) > 2*time.Minute {
				return r, fmt.Errorf("bench coop: ks%d lists fewer than %d members after 2 minutes: %s", i+1, members, resp.Text)
			}
			select {
			case <-ctx.Done():
				return r, ctx.Err()
			case <-time.After(r.Poll):
			}
		}
	}
	r.Sync = time.Since(start)
	if f := c0.first.Load(); f != 0 {
		r.Transfer = time.Since(time.Unix(0, f))
	}
	c0.on.Store(false)
	r.Octets, r.Datagrams = c0.octets.Load(), c0.datagrams.Load()
	r.Ceiling, err = udpCeiling(ctx, r.Octets)
	return r, err
}

// injectMembers adds n members (10.x.y.z, one in ten at 1.0.1) to the
// saved group LAB of the state file at path, as n registrations would.
func injectMembers(path string, n int) error {
	st, err := store.Open(path, store.Options{})
	if err != nil {
		return fmt.Errorf("bench coop: %w", err)
	}
	defer st.Close()
	gs, err := st.LoadGroups()
	if err != nil {
		return fmt.Errorf("bench coop: %w", err)
	}
	now := time.Now()
	for _, g := range gs {
		if g.Name != "LAB" {
			continue
		}
		for i := range n {
			v := "1.0.2"
			if i%10 == 9 {
				v = "1.0.1"
			}
			g.Members = append(g.Members, ks.MemberState{Address: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}),
				Version: v, Registered: now, LastRegister: now, Registrations: 1, Port: 848})
		}
		return st.SaveGroup(g)
	}
	return errors.New("bench coop: ks1 saved no group LAB")
}

// udpCeiling sends octets in 1,400-octet datagrams between two loopback
// sockets, at most 64 in flight, and returns how long it took.
func udpCeiling(ctx context.Context, octets int64) (time.Duration, error) {
	a, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 4, 201)})
	if err != nil {
		return 0, err
	}
	defer a.Close()
	b, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 4, 202)})
	if err != nil {
		return 0, err
	}
	p := &coopPeer{conn: b, addr: b.LocalAddr().(*net.UDPAddr).AddrPort(), done: make(chan struct{})}
	defer b.Close()
	n := int((octets + 1399) / 1400)
	start := time.Now()
	go p.count(n)
	buf := make([]byte, 1400)
	for i := range n {
		if err := waitWindow(ctx, p, int64(i), 64); err != nil {
			return 0, err
		}
		if _, err := a.WriteToUDPAddrPort(buf, p.addr); err != nil {
			return 0, err
		}
	}
	if err := waitDone(ctx, p, n); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// COOPNodesTable runs COOPNodes for each size and prints the table.
func COOPNodesTable(ctx context.Context, out io.Writer, runs []COOPSyncOptions) error {
	fmt.Fprintf(out, "scenario coop --nodes: through the real key servers (lab nodes, their KS-KS IKE SA, announcements and\n"+
		"member-list parts over UDP on 127.0.0.0/8); members injected into ks1's state file; sync: the secondaries'\n"+
		"start to each listing every member in show crypto gdoi feature gm-removal (polled); octets: what ks1 sent to\n"+
		"the other key servers meanwhile; ceiling: the same octets in 1,400-octet datagrams between two loopback sockets.\n")
	var rows []COOPNodesResult
	for i, o := range runs {
		r, err := COOPNodes(ctx, o.KeyServers, o.Members, uint16(10860+i), out)
		if err != nil {
			return err
		}
		rows = append(rows, r)
	}
	fmt.Fprintf(out, "%4s %9s %10s %12s %10s %10s %10s %8s %8s\n", "KSs", "members", "datagrams", "octets", "sync", "transfer", "ceiling", "x ceil", "poll")
	for _, r := range rows {
		fmt.Fprintf(out, "%4d %9d %10d %12d %10s %10s %10s %8.1f %8s\n", r.KeyServers, r.Members, r.Datagrams, r.Octets,
			r.Sync.Round(time.Millisecond), r.Transfer.Round(time.Millisecond), r.Ceiling.Round(time.Microsecond*100),
			float64(r.Transfer)/float64(max(r.Ceiling, 1)), r.Poll)
	}
	fmt.Fprintf(out, "transfer: from ks1's first member-list part (a datagram of 1,000 octets or more) to the last secondary\n"+
		"listing every member, within one poll; x ceil compares it with the ceiling.\n")
	return nil
}
