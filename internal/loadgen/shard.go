package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/groupvpn/groupvpn/internal/gm"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/isakmp"
)

// shard owns the GMs whose index is its id modulo the number of shards:
// their socket (every GM of the shard has its port) and its datagrams,
// their timers (one heap, one entry per GM moved in place), the window
// of first registrations.
type shard struct {
	g     *Generator
	id    int
	conn  *Conn
	recv  *RecvBuf
	keys  keyPool     // the members' key pairs made ahead
	ike   *ike.Config // the generator's, with keys.take as KeyPair
	mcast chan packet // multicast datagrams (joinMulticast), with a wake
	// armed is the socket's read deadline (zero: none set or it passed):
	// the shard's next timer or sweep, or earlier.
	armed   time.Time
	out     []Outbound // what this turn sends (flush)
	hout    ike.Output // what a GM's endpoint made of a datagram (packet)
	sendBuf SendBuf
	timers  wakeHeap
	// free holds the Endpoints of registrations done (at most
	// maxFreeEndpoints), for the next main modes (endpoint).
	free      []*ike.Endpoint
	waiting   []int32 // GMs whose first registration has not started
	inflight  int     // first registrations in progress
	window    int
	ctx       context.Context
	lastValid int64 // this shard's part of Stats.Valid
}

// sweepEvery is how often a shard checks every GM's TEKs (expiry, and the
// "ever without a valid TEK" count) without an event for it.
const sweepEvery = time.Second

// run is the shard's loop: its timers, then one read of its socket (up to
// recvBatch datagrams, one recvmmsg) whose deadline is the next timer, the
// datagrams handled and the answers sent (one sendmmsg per 64) on this
// goroutine. It returns at ctx's end, or on an error of the socket.
func (s *shard) run(ctx context.Context) error {
	s.ctx = ctx
	nextSweep := time.Now().Add(sweepEvery)
	for {
		now := time.Now()
		s.admit(now)
		s.fire(now)
		if !now.Before(nextSweep) {
			s.sweep(now)
			nextSweep = now.Add(sweepEvery)
		}
		s.flush()
		wake := nextSweep
		if len(s.timers) > 0 {
			if t := s.g.t0.Add(time.Duration(s.timers[0].at)); t.Before(wake) {
				wake = t
			}
		}
		if s.armed.IsZero() || wake.Before(s.armed) {
			s.conn.c.SetReadDeadline(wake)
			s.armed = wake
		}
		// After the deadline is set: a multicast datagram queued after
		// this drain moves it to the past (wake), so the read returns.
		if s.drainMulticast() {
			continue
		}
		k, err := s.conn.ReceiveBatch(s.recv)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				s.armed = time.Time{}
				continue
			}
			return fmt.Errorf("loadgen: shard %d: receive: %w", s.id, err)
		}
		s.g.Stats.PacketsIn.Add(int64(k))
		s.g.Stats.ReadCalls.Add(1)
		now = time.Now()
		for i := range k {
			// data is the receive buffer's, valid until the next read:
			// the protocol's parsers copy what they keep.
			data, from, dst := s.recv.Datagram(i)
			idx, ok := route(s.g.o.Base, s.g.o.Members, dst, data)
			switch {
			case !ok && idx >= 0:
				s.g.Stats.DropMalformed.Add(1)
			case !ok || idx%len(s.g.shards) != s.id:
				s.g.Stats.DropNotMember.Add(1) // no GM's, or not on this GM's port
			default:
				s.packet(packet{idx: int32(idx), from: from, to: netip.AddrPortFrom(dst, s.conn.Port()), data: data}, now)
			}
		}
	}
}

// wake makes the shard's read return at once (another goroutine queued
// work for it).
func (s *shard) wake() { s.conn.c.SetReadDeadline(time.Unix(1, 0)) }

// drainMulticast hands the queued multicast datagrams to the shard's GMs;
// it reports whether there were any.
func (s *shard) drainMulticast() bool {
	any := false
	for {
		select {
		case p := <-s.mcast:
			s.packet(p, time.Now())
			any = true
		default:
			return any
		}
	}
}

// admit starts first registrations while the window has room.
func (s *shard) admit(now time.Time) {
	for s.inflight < s.window && len(s.waiting) > 0 {
		i := s.waiting[0]
		s.waiting = s.waiting[1:]
		g := &s.g.sims[i]
		g.state = simStarted
		s.inflight++
		s.g.Stats.Started.Add(1)
		g.m.Start(now)
		s.rearm(i, g, time.Time{})
	}
}

// fire runs the GMs' due timers.
func (s *shard) fire(now time.Time) {
	for len(s.timers) > 0 && s.timers[0].at <= int64(now.Sub(s.g.t0)) {
		e := s.timers[0]
		s.timers.remove(s.g.sims, e.idx)
		g := &s.g.sims[e.idx]
		s.g.Stats.Timers.Add(1)
		g.wake = 0
		s.before(g, now)
		if g.ep != nil {
			s.process(e.idx, g, g.ep.Tick(now), now)
		}
		s.execute(e.idx, g, g.m.Timer(now), now)
		s.afterEvent(e.idx, g, now, now)
	}
}

// packet hands a datagram to its GM (or, multicast, to every GM of the
// shard holding the KEK it names).
func (s *shard) packet(p packet, now time.Time) {
	if p.multicast {
		spi, _ := gm.PushSPI(p.data)
		for i := s.id; i < len(s.g.sims); i += len(s.g.shards) {
			g := &s.g.sims[i]
			if !g.tab.holdsKEK(spi) {
				continue
			}
			s.push(int32(i), g, p, now)
		}
		return
	}
	g := &s.g.sims[p.idx]
	if p.data[18] == byte(isakmp.ExchangePush) {
		spi, _ := gm.PushSPI(p.data)
		if !g.tab.holdsKEK(spi) { // the member's KEK store: gm.Member.HoldsKEK, without the copy
			s.g.Stats.DropNoKEK.Add(1)
			return
		}
		s.push(p.idx, g, p, now)
		return
	}
	if g.ep == nil {
		s.g.Stats.DropNoSA.Add(1)
		return
	}
	s.before(g, now)
	// One Output's arrays for every datagram (ike.Endpoint.HandleInto):
	// nothing process does hands s.hout to HandleInto again.
	g.ep.HandleInto(&s.hout, p.from, p.data, now)
	s.process(p.idx, g, s.hout, now)
	clear(s.hout.Send) // they name SAs and alias their buffers
	clear(s.hout.Events)
	s.hout.Send, s.hout.Events = s.hout.Send[:0], s.hout.Events[:0]
	s.after(p.idx, g, now)
}

func (s *shard) push(i int32, g *sim, p packet, now time.Time) {
	s.before(g, now)
	addr := s.g.Addr(int(i))
	s.execute(i, g, g.m.Push(gm.Push{From: p.from, To: p.to, Data: p.data, Local: addr}, now), now)
	st := g.m.Status()
	switch {
	case st.Rekeys.Received > g.rk && st.Rekeys.AcksSent > g.acks:
		s.g.Stats.Acks.Add(1)
		s.g.Stats.LastAckAt.Store(Monotonic()) // now, not the event's time: a multicast rekey is one event for many GMs
	case st.Rekeys.AcksSent > g.acks:
		s.g.Stats.AcksAgain.Add(int64(st.Rekeys.AcksSent - g.acks))
	}
	if st.Rekeys.Received > g.rk {
		s.g.Stats.Rekeys.Add(int64(st.Rekeys.Received - g.rk))
		s.g.Stats.LastRekeyAt.Store(Monotonic())
	}
	g.rk, g.acks = st.Rekeys.Received, st.Rekeys.AcksSent
	s.after(i, g, now)
}

// process carries out an endpoint's output, as node.process does.
func (s *shard) process(i int32, g *sim, out ike.Output, now time.Time) {
	addr := s.g.Addr(int(i))
	for _, p := range out.Send {
		s.send(addr, p.To, p.Data)
	}
	for _, ev := range out.Events {
		switch e := ev.Event.(type) {
		case ike.Established:
			if g.m.AwaitsPhase1(ev.SA.Peer()) {
				s.execute(i, g, g.m.Phase1Up(ev.SA, false, now), now)
			}
		case ike.Phase2:
			if e.Msg.Header.Exchange == isakmp.ExchangePull && g.m.OwnsPull(ev.SA, e.Msg.Header.MessageID) {
				s.execute(i, g, g.m.PullMessage(e.Msg, addr, now), now)
			}
		case ike.Failed:
			s.execute(i, g, g.m.Phase1Down(ev.SA, e.Err.Error(), false, now), now)
		case ike.Deleted:
			s.execute(i, g, g.m.Phase1Down(ev.SA, "deleted by the peer", false, now), now)
		case ike.Expired:
			s.execute(i, g, g.m.Phase1Down(ev.SA, "expired", false, now), now)
		case ike.Notified:
			s.execute(i, g, g.m.Refused(ev.SA, e.Notify.NotifyType, now), now)
		case ike.PeerLostState:
			s.execute(i, g, g.m.PeerLost(ev.SA, now), now)
		}
	}
}

// execute carries out a member's Result, as node.execute does, except
// that every Connect runs a fresh main mode from the GM's address.
func (s *shard) execute(i int32, g *sim, r gm.Result, now time.Time) {
	addr := s.g.Addr(int(i))
	for _, p := range r.Send {
		s.send(addr, p.To, p.Data)
	}
	if r.Join != nil && r.Join.Multicast.IsValid() {
		s.g.joinMulticast(s.ctx, r.Join.Multicast)
	}
	for _, ev := range r.Events {
		switch ev.Mnemonic {
		case "GM_REGS_FAILED":
			s.g.Stats.Failures.Add(1)
		case "GM_REKEY_REJECTED", "GM_REKEY_REPLAY":
			s.g.Stats.RekeyRejected.Add(1)
		case "GM_RECV_DELETE", "GM_RECV_DELETE_IMMEDIATE":
			s.g.Stats.Removals.Add(1)
		}
	}
	if !r.Connect.IsValid() {
		return
	}
	ep, err := s.endpoint(addr)
	var sa *ike.SA
	var out ike.Output
	if err == nil {
		sa, out, err = ep.Initiate(r.Connect, now)
	}
	if err != nil {
		s.execute(i, g, g.m.ConnectFailed(err, now), now)
		return
	}
	g.ep, g.sa = ep, sa
	g.m.Phase1Started(sa, now)
	s.process(i, g, out, now)
}

// maxFreeEndpoints bounds the Endpoints a shard keeps for the next
// registrations: a window's worth and more, not all the members' after
// they all registered again at once.
const maxFreeEndpoints = 1024

// endpoint returns an Endpoint for a main mode from addr: one of a
// registration done (reset when it was kept, and for addr now:
// ike.Endpoint.Reset), or a new one. Issue 18:
// a new Endpoint per registration, its tables, scratch and logger, cost
// the generator ~35 allocations and their CPU each time.
func (s *shard) endpoint(addr netip.Addr) (*ike.Endpoint, error) {
	local := netip.AddrPortFrom(addr, s.conn.Port())
	if n := len(s.free); n > 0 {
		ep := s.free[n-1]
		s.free[n-1] = nil
		s.free = s.free[:n-1]
		ep.Reset(local)
		return ep, nil
	}
	return ike.NewEndpoint(s.ike, local, ike.Limits{})
}

// send queues a datagram for the turn's flush.
func (s *shard) send(from netip.Addr, to netip.AddrPort, b []byte) {
	s.out = append(s.out, Outbound{From: from, To: to, Data: b})
}

// flush sends what the turn queued: one sendmmsg per 64 datagrams.
func (s *shard) flush() {
	if len(s.out) == 0 {
		return
	}
	sent, calls := s.conn.SendBatch(&s.sendBuf, s.out)
	s.g.Stats.PacketsOut.Add(int64(sent))
	s.g.Stats.SendErrors.Add(int64(len(s.out) - sent))
	s.g.Stats.SendCalls.Add(int64(calls))
	clear(s.out)
	s.out = s.out[:0]
}

// before checks, ahead of any event for a GM, whether it went without a
// valid TEK since it last held one: validity only comes back through an
// event, so checking before each event and at each sweep sees every gap.
func (s *shard) before(g *sim, now time.Time) {
	if g.state == simRegistered && !g.tab.holdsValid(now) {
		g.state = simLacked
		s.g.Stats.Lacked.Add(1)
	}
}

// after books what an event changed for GM i: a registration completed
// (its window slot freed, its phase-1 SA forgotten), its next wake.
func (s *shard) after(i int32, g *sim, now time.Time) { s.afterEvent(i, g, now, time.Time{}) }

// afterEvent is after; ran is set when the event was the GM's timer.
func (s *shard) afterEvent(i int32, g *sim, now, ran time.Time) {
	st := g.m.Status()
	if st.Registrations > g.regs {
		g.regs = st.Registrations
		s.g.Stats.Registrations.Add(1)
		s.g.Stats.LastRegAt.Store(s.g.mono(now))
		s.g.Stats.FirstAt.CompareAndSwap(0, s.g.mono(now))
		if g.state == simStarted {
			g.state = simRegistered
			s.inflight--
			s.g.Stats.Registered.Add(1)
			s.g.Stats.LastFirstAt.Store(s.g.mono(now))
		}
	}
	if g.state != simWaiting && g.state != simStarted {
		s.before(g, now) // a removal "now" deletes the TEKs at once
	}
	if st.State == "idle" || st.State == "registered" {
		if g.sa != nil {
			g.m.DropSA(g.sa)
		}
		// The member holds none of the Endpoint's SAs now (DropSA; an
		// idle or registered member has no phase 1 or pull in
		// progress), nor does the GM: the next registration may have
		// it. Reset now, so that the Endpoints kept hold no SA (nor
		// its keys) meanwhile.
		if g.ep != nil && len(s.free) < maxFreeEndpoints {
			g.ep.Reset(netip.AddrPort{})
			s.free = append(s.free, g.ep)
		}
		g.ep, g.sa = nil, nil
	}
	s.rearm(i, g, ran)
}

// rearm puts GM i's next wake (its member's timer, its endpoint's) in the
// heap if it moved.
// ran, when set, is when the GM's timer just ran: a wake not after it is
// put 10 ms later (and counted), so that a GM whose timer does not move
// cannot keep its shard in fire.
func (s *shard) rearm(i int32, g *sim, ran time.Time) {
	w := g.m.Next()
	if g.ep != nil {
		if t := g.ep.NextTimer(); !t.IsZero() && (w.IsZero() || t.Before(w)) {
			w = t
		}
	}
	if w.IsZero() {
		g.wake = 0
		s.timers.remove(s.g.sims, i)
		return
	}
	if !ran.IsZero() && !w.After(ran) {
		w = ran.Add(10 * time.Millisecond)
		s.g.Stats.TimersClamped.Add(1)
	}
	if at := int64(w.Sub(s.g.t0)); at != g.wake || g.hpos == 0 {
		g.wake = at
		s.timers.set(s.g.sims, i, at)
	}
}

// sweep expires TEKs and counts the GMs holding a valid one.
func (s *shard) sweep(now time.Time) {
	var n int64
	for i := s.id; i < len(s.g.sims); i += len(s.g.shards) {
		g := &s.g.sims[i]
		if g.state == simWaiting {
			continue
		}
		s.before(g, now)
		g.tab.expire(now)
		if g.tab.holdsValid(now) {
			n++
		}
	}
	// Each shard adds its own count; the total is exact between sweeps
	// of different shards only approximately.
	old := s.lastValid
	s.lastValid = n
	s.g.Stats.Valid.Add(n - old)
}

type wake struct {
	at  int64
	idx int32
}

// wakeHeap is a shard's GM timers: at most one entry per GM (sim.hpos is
// its place), moved in place when the GM's next wake moves, so that the
// heap holds no superseded entries and nothing is boxed (container/heap's
// Push and Pop take and return an interface: an allocation each).
type wakeHeap []wake

// set puts GM i's wake at at, in place if it has one.
func (h *wakeHeap) set(sims []sim, i int32, at int64) {
	g := &sims[i]
	if g.hpos == 0 {
		*h = append(*h, wake{at: at, idx: i})
		g.hpos = int32(len(*h))
		h.up(sims, len(*h)-1)
		return
	}
	j := int(g.hpos - 1)
	old := (*h)[j].at
	(*h)[j].at = at
	if at < old {
		h.up(sims, j)
	} else {
		h.down(sims, j)
	}
}

// remove takes GM i's wake out, if it has one.
func (h *wakeHeap) remove(sims []sim, i int32) {
	g := &sims[i]
	if g.hpos == 0 {
		return
	}
	j, last := int(g.hpos-1), len(*h)-1
	g.hpos = 0
	if j != last {
		(*h)[j] = (*h)[last]
		sims[(*h)[j].idx].hpos = int32(j + 1)
	}
	*h = (*h)[:last]
	if j < last {
		h.down(sims, j)
		h.up(sims, j)
	}
}

func (h wakeHeap) swap(sims []sim, a, b int) {
	h[a], h[b] = h[b], h[a]
	sims[h[a].idx].hpos = int32(a + 1)
	sims[h[b].idx].hpos = int32(b + 1)
}

func (h wakeHeap) up(sims []sim, j int) {
	for j > 0 {
		p := (j - 1) / 2
		if h[p].at <= h[j].at {
			return
		}
		h.swap(sims, p, j)
		j = p
	}
}

func (h wakeHeap) down(sims []sim, j int) {
	for {
		l := 2*j + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h[r].at < h[l].at {
			m = r
		}
		if h[j].at <= h[m].at {
			return
		}
		h.swap(sims, j, m)
		j = m
	}
}
