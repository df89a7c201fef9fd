package lab

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/groupvpn/groupvpn/internal/dataplane"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/tmd"
)

// The lab's data plane: every member runs the ESP engine of tmd -tun
// (internal/dataplane) over an in-memory TUN device and ESP in UDP
// (RFC 3948, dataplane.UDPLink) on its own loopback address, with the TEKs
// and policy its GM downloaded from the lab KS. Behind member N
// (1-based) are the hosts 10.10.N.2 and 10.20.N.2, inside the KS's ACLs
// lab-traffic (AES-GCM) and lab-voice (UDP port 5060, AES-CBC with
// HMAC-SHA-256).

// maxDataPlane bounds the members that run an engine: each site is a /24
// numbered after its member.
const maxDataPlane = 250

// Marker is the payload prefix of the lab's synthetic packets; the lab
// checks that it never appears in what crosses the UDP sockets.
const Marker = "groupvpn-lab-plaintext"

// HostAddr is the data host behind member i (0-based) on the GCM SA's
// sites (voice false) or the CBC SA's (voice true).
func HostAddr(i int, voice bool) netip.Addr {
	b := byte(10)
	if voice {
		b = 20
	}
	return netip.AddrFrom4([4]byte{10, b, byte(i + 1), 2})
}

func sitePrefix(i int, voice bool) netip.Prefix {
	return netip.PrefixFrom(HostAddr(i, voice), 24).Masked()
}

// dpMember is one member's engine, TUN device and link.
type dpMember struct {
	i    int
	eng  *dataplane.Engine
	tun  *tuntest.ChannelTUN
	link *dataplane.UDPLink

	// What crossed the link (its mirror).
	wireSent, wireOctets, wireMarker, wireNotESP atomic.Uint64
	spis                                         atomic.Pointer[map[uint32]bool]

	// What the host behind it received.
	delivered, misdelivered atomic.Uint64
	sent                    int
}

func (m *dpMember) mirror(d dataplane.Direction, b []byte) {
	if d != dataplane.Sent {
		return
	}
	m.wireSent.Add(1)
	m.wireOctets.Add(uint64(len(b)))
	if bytes.Contains(b, []byte(Marker)) {
		m.wireMarker.Add(1)
	}
	spis := m.spis.Load()
	if len(b) < 8 || spis == nil || !(*spis)[binary.BigEndian.Uint32(b)] {
		m.wireNotESP.Add(1)
	}
}

// startDataPlane starts every member's engine (before registration: the
// engines poll their SA databases).
func (l *Lab) startDataPlane(o Options) error {
	if len(l.sadbs) > maxDataPlane {
		return fmt.Errorf("lab: the data plane runs with at most %d members", maxDataPlane)
	}
	l.dpDone = make(chan struct{})
	for i, keys := range l.sadbs {
		if i < len(l.GMs) {
			if d, ok := l.GMs[i].Node.Dataplane().(*labSADB); !ok || d != keys {
				return fmt.Errorf("lab: gm%d's SA database is not the lab's", i+1)
			}
		}
		m := &dpMember{i: i, tun: tuntest.NewChannelTUN()}
		link, err := dataplane.ListenUDP(dataplane.UDPConfig{Local: netip.AddrPortFrom(l.GMAddr(i), 0), Mirror: m.mirror})
		if err != nil {
			return fmt.Errorf("lab: gm%d: %w", i+1, err)
		}
		m.link = link
		now := o.Now
		if l.v2 != nil && now == nil {
			l.skewed = true
			now = func() time.Time { return time.Now().Add(time.Duration(l.skew.Load())) }
		}
		m.eng, err = dataplane.New(dataplane.Config{Keys: keys, TUN: m.tun.TUN(), Link: link, Now: now,
			Groups: []string{"LAB"}, Poll: 500 * time.Millisecond})
		if err != nil {
			link.Close()
			return fmt.Errorf("lab: gm%d: %w", i+1, err)
		}
		m.eng.Run()
		keys.device = fmt.Sprintf("lab-gm%d (in-memory TUN; ESP in UDP on %v)", i+1, link.LocalAddr())
		keys.eng.Store(m.eng) // publishes device too
		l.dp = append(l.dp, m)
		l.dpWG.Add(1)
		go l.host(m)
	}
	for _, m := range l.dp {
		var peers []dataplane.Peer
		for _, p := range l.dp {
			if p != m {
				peers = append(peers, dataplane.Peer{Prefix: sitePrefix(p.i, false), Addr: p.link.LocalAddr()},
					dataplane.Peer{Prefix: sitePrefix(p.i, true), Addr: p.link.LocalAddr()})
			}
		}
		m.link.SetPeers(peers)
	}
	return nil
}

// host is the hosts behind member m: they count what the engine delivers.
func (l *Lab) host(m *dpMember) {
	defer l.dpWG.Done()
	for {
		select {
		case <-l.dpDone:
			return
		case p := <-m.tun.Inbound:
			if len(p) >= 20 && (netip.AddrFrom4([4]byte(p[16:20])) == HostAddr(m.i, false) ||
				netip.AddrFrom4([4]byte(p[16:20])) == HostAddr(m.i, true)) && bytes.Contains(p, []byte(Marker)) {
				m.delivered.Add(1)
				if l.deliver != nil && len(p) >= 28 && p[0] == 0x45 && p[9] == 17 {
					l.deliver(m.i, p[28:])
				}
			} else {
				m.misdelivered.Add(1)
			}
		}
	}
}

// SkipAhead moves the clock of a G-IKEv2 lab's ESP engines d ahead (the
// routers keep theirs): a rekey's new TEKs, sent with only after its
// activation delay (GWP_ATD), carry the traffic without waiting for it.
// Stop the traffic first: packets in flight across the jump may fall
// outside the time-based replay window.
func (l *Lab) SkipAhead(d time.Duration) error {
	if l.v2 == nil || l.dpDone == nil || !l.skewed {
		return errors.New("lab: SkipAhead needs a G-IKEv2 lab's data plane on the wall clock")
	}
	l.skew.Add(int64(d))
	for _, m := range l.dp {
		if err := m.eng.Refresh(); err != nil {
			return fmt.Errorf("lab: gm%d: %w", m.i+1, err)
		}
	}
	return nil
}

// EncapsBySPI sums the packets every member's engine encapsulated with
// each TEK it holds.
func (l *Lab) EncapsBySPI() map[uint32]uint64 {
	out := map[uint32]uint64{}
	for _, m := range l.dp {
		for _, t := range l.sadbs[m.i].TEKs() {
			c, _ := m.eng.SACounters(t.Group, t.SPI)
			out[t.SPI] += c.EncapsPackets
		}
	}
	return out
}

func (l *Lab) stopDataPlane() {
	if l.dpDone == nil {
		return
	}
	close(l.dpDone)
	// Each engine takes up to its link's receive timeout to stop: all at
	// once.
	var wg sync.WaitGroup
	for _, m := range l.dp {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.eng.Close()
		}()
	}
	wg.Wait()
	l.dpWG.Wait()
	l.dpDone = nil
}

// DataPlaneMember is one member's line of the traffic report.
type DataPlaneMember struct {
	Name      string
	Sent      int    // synthetic packets its hosts sent
	Delivered uint64 // packets its hosts received with the marker
	Stats     dataplane.Stats
	Link      dataplane.UDPStats
	// What its link sent: datagrams, octets, how many carried the
	// plaintext marker and how many were not ESP for a TEK of the group.
	Wire, WireOctets, WireMarker, WireNotESP uint64
}

// Drops is every packet the member's engine dropped, for any reason.
func (m DataPlaneMember) Drops() uint64 {
	s := m.Stats
	return s.AuthFailures + s.Replay + s.TBAR + s.NoSA + s.FailCloseDrops + s.PolicyMismatch + s.Malformed +
		s.SealErrors + s.SendErrors + s.TUNErrors + s.TooManySenders + s.SocketDrops
}

// TrafficReport is what Traffic measured.
type TrafficReport struct {
	Members            []DataPlaneMember
	Sent, Delivered    uint64
	Wire, WireMarker   uint64
	WireNotESP         uint64
	Elapsed            time.Duration
	SPIs               []uint32
	DeliveredAll, Safe bool // every packet delivered; nothing but ESP crossed, never the marker
	// All lists every member in Print (Options.All); otherwise more than
	// SummaryRows members are summarised.
	All bool
}

// peersOf lists the members member i sends to: every other one, up to 7.
func (l *Lab) peersOf(i int) []int {
	var out []int
	for k := 1; k < len(l.dp) && k <= 7; k++ {
		out = append(out, (i+k)%len(l.dp))
	}
	return out
}

// Traffic makes the hosts behind every member send one UDP packet on each
// of the group's SAs (lab-traffic, lab-voice) to the hosts behind up to 7
// other members, waits for them (at most timeout) and reports what the
// engines did and what crossed the sockets. It needs a lab started with
// Options.DataPlane whose members are registered.
func (l *Lab) Traffic(ctx context.Context, timeout time.Duration) (TrafficReport, error) {
	r := TrafficReport{All: l.all}
	if l.dpDone == nil {
		return r, errors.New("lab: started without the data plane")
	}
	spis := map[uint32]bool{}
	for _, m := range l.dp {
		for _, t := range l.sadbs[m.i].TEKs() { // the GDOI daemon's or the G-IKEv2 router's
			if !spis[t.SPI] {
				r.SPIs = append(r.SPIs, t.SPI)
			}
			spis[t.SPI] = true
		}
	}
	for _, m := range l.dp {
		m.spis.Store(&spis)
		if err := m.eng.Refresh(); err != nil {
			return r, fmt.Errorf("lab: gm%d: %w", m.i+1, err)
		}
	}
	// Counted from here: Traffic may run again, and live traffic
	// (SendUDP) delivers to the same hosts.
	sent0, delivered0 := map[*dpMember]int{}, map[*dpMember]uint64{}
	for _, m := range l.dp {
		sent0[m], delivered0[m] = m.sent, m.delivered.Load()
	}
	start := time.Now()
	var want uint64
	for _, m := range l.dp {
		for _, p := range l.peersOf(m.i) {
			for _, voice := range []bool{false, true} {
				dport := uint16(7000)
				if voice {
					dport = 5060
				}
				pkt := udpPacket(HostAddr(m.i, voice), HostAddr(p, voice), dport,
					fmt.Sprintf("%s gm%d->gm%d", Marker, m.i+1, p+1))
				select {
				case m.tun.Outbound <- pkt:
				case <-ctx.Done():
					return r, ctx.Err()
				}
				m.sent++
				want++
			}
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		var got uint64
		for _, m := range l.dp {
			got += m.delivered.Load() - delivered0[m]
		}
		if got >= want || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	r.Elapsed = time.Since(start)
	for _, m := range l.dp {
		dm := DataPlaneMember{Name: fmt.Sprintf("gm%d", m.i+1), Sent: m.sent - sent0[m], Delivered: m.delivered.Load() - delivered0[m],
			Stats: m.eng.Stats(), Link: m.link.Stats(), Wire: m.wireSent.Load(), WireOctets: m.wireOctets.Load(),
			WireMarker: m.wireMarker.Load(), WireNotESP: m.wireNotESP.Load()}
		r.Members = append(r.Members, dm)
		r.Sent += uint64(dm.Sent)
		r.Delivered += dm.Delivered
		r.Wire += dm.Wire
		r.WireMarker += dm.WireMarker
		r.WireNotESP += dm.WireNotESP
	}
	r.DeliveredAll = r.Delivered == want && want > 0
	r.Safe = r.Wire >= r.Delivered && r.WireMarker == 0 && r.WireNotESP == 0
	return r, nil
}

// Print writes the report as a table.
func (r TrafficReport) Print(out io.Writer) {
	fmt.Fprintf(out, "\nData plane: each member's ESP engine (the one tmd -tun runs) on an in-memory TUN,\n"+
		"ESP in UDP (RFC 3948) on its loopback address; hosts 10.10.N.2 (lab-traffic, aes-gcm) and\n"+
		"10.20.N.2 (lab-voice, udp/5060, aes-cbc + hmac-sha256) behind gmN send UDP to the other members' hosts.\n")
	fmt.Fprintf(out, "  %-6s %6s %7s %7s %10s %6s %14s %13s\n", "GM", "sent", "encaps", "decaps", "delivered", "drops", "UDP datagrams", "with marker")
	show, skipped := rowsShown(len(r.Members), r.All)
	var drops uint64
	for i, m := range r.Members {
		drops += m.Drops()
		if i == SummaryEnds && skipped > 0 {
			skipLine(out, "  ", skipped, "members")
		}
		if show(i) {
			fmt.Fprintf(out, "  %-6s %6d %7d %7d %10d %6d %14d %13d\n", m.Name, m.Sent, m.Stats.Encaps, m.Stats.Decaps,
				m.Delivered, m.Drops(), m.Wire, m.WireMarker)
		}
	}
	if skipped > 0 {
		fmt.Fprintf(out, "  %d members: %d drops in all\n", len(r.Members), drops)
	}
	spis := make([]string, len(r.SPIs))
	for i, s := range r.SPIs {
		spis[i] = fmt.Sprintf("0x%08x", s)
	}
	fmt.Fprintf(out, "%d of %d packets delivered in %s; %d UDP datagrams crossed the sockets, %d of them ESP for the group's TEKs (SPIs %s),\n"+
		"and the plaintext marker %q appeared in %d of them.\n",
		r.Delivered, r.Sent, r.Elapsed.Round(time.Millisecond), r.Wire, r.Wire-r.WireNotESP, strings.Join(spis, ", "), Marker, r.WireMarker)
}

// SendUDP makes the host behind member i (0-based) send a UDP packet
// carrying payload and the lab's Marker to the host behind member j: on
// the lab-voice SA's sites to port 5060 when voice, else on lab-traffic's
// to port 7000. It blocks while member i's engine is busy. The receiving
// host hands the payload (with the Marker after it) to Options.Deliver.
func (l *Lab) SendUDP(ctx context.Context, i, j int, voice bool, payload []byte) error {
	if l.dpDone == nil || i < 0 || i >= len(l.dp) || j < 0 || j >= len(l.dp) {
		return errors.New("lab: SendUDP needs the data plane and two of its members")
	}
	dport := uint16(7000)
	if voice {
		dport = 5060
	}
	pkt := udpPacket(HostAddr(i, voice), HostAddr(j, voice), dport, string(payload)+Marker)
	select {
	case l.dp[i].tun.Outbound <- pkt:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// udpPacket builds an IPv4 UDP packet (UDP checksum 0: none).
func udpPacket(src, dst netip.Addr, dport uint16, payload string) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8] = 64
	p[9] = 17 // UDP
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(p[20:], 40000)
	binary.BigEndian.PutUint16(p[22:], dport)
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

// labSADB is a member's SA database (sadb.Memory, the engine's Keys) that
// also answers its engine's packet counters as tmd's client does, so that
// `show crypto ipsec sa` on a lab member shows them. Like tmd's backend
// (tmd.MemoryBackend.Notify), it rebuilds its engine's snapshot after every
// change, so that a new TEK or policy is in force at once rather than at
// the engine's next poll.
type labSADB struct {
	*sadb.Memory
	eng    atomic.Pointer[dataplane.Engine]
	device string
}

func (s *labSADB) changed() {
	if e := s.eng.Load(); e != nil {
		_ = e.Refresh() // a TEK the engine cannot use stays unused, as in tmd
	}
}

func (s *labSADB) InstallTEK(t sadb.TEK) error {
	defer s.changed()
	return s.Memory.InstallTEK(t)
}

func (s *labSADB) DeleteTEK(group string, spi uint32) error {
	defer s.changed()
	return s.Memory.DeleteTEK(group, spi)
}

// Expire expires the Memory's SAs (the node's sweep) and rebuilds the
// engine's snapshot when a TEK went.
func (s *labSADB) Expire(now time.Time) ([]sadb.TEK, []sadb.KEK, time.Time) {
	teks, keks, next := s.Memory.Expire(now)
	if len(teks) > 0 {
		s.changed()
	}
	return teks, keks, next
}

func (s *labSADB) SetFailMode(group string, m sadb.FailMode) {
	s.Memory.SetFailMode(group, m)
	s.changed()
}

func (s *labSADB) SetPolicy(group string, p []sadb.PolicyEntry) {
	s.Memory.SetPolicy(group, p)
	s.changed()
}

func (s *labSADB) Counters(context.Context) ([]tmd.TEKCounters, *tmd.DataPlaneCounters, error) {
	e := s.eng.Load()
	if e == nil {
		return nil, nil, errors.New("lab: the member's engine is not running")
	}
	sas := []tmd.TEKCounters{}
	for _, t := range s.TEKs() {
		c, _ := e.SACounters(t.Group, t.SPI) // not yet in the engine: zeros
		sas = append(sas, tmd.TEKCounters{Group: t.Group, SPI: t.SPI, SACounters: tmd.SACounters(c)})
	}
	dp := &tmd.DataPlaneCounters{Device: s.device}
	for _, c := range e.Counters() {
		dp.Counters = append(dp.Counters, tmd.Counter{Name: c.Name, Help: c.Help, Value: c.Value})
	}
	return sas, dp, nil
}
