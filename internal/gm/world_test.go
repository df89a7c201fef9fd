package gm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/isakmp"
)

// world is one group member and its key servers in memory: real IKEv1
// endpoints, real GROUPKEY-PULL and GROUPKEY-PUSH messages, a real
// ks.Server, and a clock that jumps from one timer to the next. It plays
// the part internal/node plays around a gm.Member (routing datagrams,
// providing phase 1s, executing Results) without sockets or goroutines,
// so hours of protocol time run in milliseconds and every run is the same.
type world struct {
	t        testing.TB
	now      time.Time
	rnd      *rand.ChaCha8
	gmAddr   netip.AddrPort
	gmEP     *ike.Endpoint
	dp       *sadb.Memory
	m        *Member
	kss      []*keyServer
	suspects map[*ike.SA]bool
	queue    []packet
	events   []Event
	trace    []string // the exchanges as they happened, for failure messages
}

type packet struct {
	from, to netip.AddrPort
	data     []byte
}

// keyServer is one KS of the world: an endpoint and a ks.Server.
type keyServer struct {
	addr   netip.AddrPort
	ep     *ike.Endpoint
	srv    *ks.Server
	serves map[uint32]*gdoi.Serve // by message ID
	down   bool                   // unreachable: datagrams to and from it are lost
	pushes bool                   // send its scheduled rekeys
	acks   []uint32               // sequence numbers acknowledged to it
	rekeys []*ks.Push
}

const group = "G"

var t0 = time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)

func phase1Config(rnd *rand.ChaCha8) *ike.Config {
	return &ike.Config{Suites: []ike.Suite{{KeyBits: 256, Hash: ike.SHA256, Group: 19, Auth: ike.AuthPSK}}, DOI: isakmp.DOIGDOI,
		Rand: rnd, Creds: ike.Credentials{PSK: func(netip.Addr) ([]byte, bool) { return []byte("psk"), true }}}
}

// groupConfig is the KS side of the group: a 1 h TEK, unicast rekeys
// with ACKs.
func groupConfig(t testing.TB, addr netip.Addr) ks.GroupConfig {
	key, err := ecdsa.GenerateKey(elliptic.P256(), nil)
	if err != nil {
		t.Fatal(err)
	}
	sel := []ks.Selector{{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8")}}
	return ks.GroupConfig{Name: group, ID: 1234, Address: addr, SigningKey: key, Rekey: ks.RekeyPolicy{Unicast: true},
		TEKs: []ks.TEKPolicy{{Transform: isakmp.ESPAESGCM16, KeyBits: 256, Lifetime: time.Hour, Selectors: sel}}}
}

// newWorld builds a member of group G whose key servers are at servers
// (in order), each serving G.
func newWorld(t testing.TB, servers ...string) *world {
	t.Helper()
	return newWorldSeed(t, 1, servers...)
}

// newWorldSeed is newWorld with another seed of its randomness (keys,
// SPIs, nonces and jitter): every run with the same seed is the same.
func newWorldSeed(t testing.TB, seed byte, servers ...string) *world {
	t.Helper()
	w := &world{t: t, now: t0, rnd: rand.NewChaCha8([32]byte{seed}), gmAddr: netip.MustParseAddrPort("10.1.0.1:848"),
		dp: sadb.NewMemory(), suspects: map[*ike.SA]bool{}}
	var err error
	if w.gmEP, err = ike.NewEndpoint(phase1Config(w.rnd), w.gmAddr, ike.Limits{}); err != nil {
		t.Fatal(err)
	}
	var addrs []netip.AddrPort
	for _, s := range servers {
		a := netip.MustParseAddrPort(s)
		ep, err := ike.NewEndpoint(phase1Config(w.rnd), a, ike.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		k := &keyServer{addr: a, ep: ep, srv: ks.New(ks.Options{Rand: w.rnd}), serves: map[uint32]*gdoi.Serve{}, pushes: true}
		if err := k.srv.AddGroup(groupConfig(t, a.Addr()), w.now); err != nil {
			t.Fatal(err)
		}
		w.kss = append(w.kss, k)
		addrs = append(addrs, a)
	}
	w.m = NewMember(Config{Name: group, ID: 1234, Servers: addrs, SIDs: 1}, Options{Dataplane: w.dp, KEKs: w.dp, Rand: w.rnd})
	w.exec(w.m.Init(addrs, w.now))
	return w
}

func (w *world) ks(a netip.AddrPort) *keyServer {
	for _, k := range w.kss {
		if k.addr == a {
			return k
		}
	}
	return nil
}

func (w *world) note(format string, args ...any) {
	w.trace = append(w.trace, w.now.Sub(t0).String()+" "+fmt.Sprintf(format, args...))
}

// exec carries out a member's Result as the node does.
func (w *world) exec(res Result) {
	if sa, ok := res.Suspect.(*ike.SA); ok && sa != nil {
		w.suspects[sa] = true
	}
	for _, s := range res.Send {
		w.queue = append(w.queue, packet{w.gmAddr, s.To, s.Data})
	}
	w.events = append(w.events, res.Events...)
	for _, e := range res.Events {
		if e.Mnemonic != "" {
			w.note("GM %s: %s", e.Mnemonic, e.Msg)
		}
	}
	if ks := res.Connect; ks.IsValid() {
		for _, sa := range w.gmEP.SAs() {
			if sa.Peer() == ks && sa.Info().Initiator && !w.suspects[sa] {
				w.exec(w.m.Phase1Up(sa, true, w.now))
				return
			}
		}
		sa, out, err := w.gmEP.Initiate(ks, w.now)
		if err != nil {
			w.exec(w.m.ConnectFailed(err, w.now))
			return
		}
		w.m.Phase1Started(sa, w.now)
		w.gmOutput(out)
	}
}

// gmOutput routes the GM endpoint's datagrams and events (node.process).
func (w *world) gmOutput(out ike.Output) {
	for _, p := range out.Send {
		w.queue = append(w.queue, packet{w.gmAddr, p.To, p.Data})
	}
	for _, ev := range out.Events {
		switch e := ev.Event.(type) {
		case ike.Established:
			w.note("GM phase 1 with %s established", e.Info.Peer)
			if e.Info.Initiator && w.m.AwaitsPhase1(e.Info.Peer) {
				w.exec(w.m.Phase1Up(ev.SA, false, w.now))
			}
			for sa := range w.suspects {
				if sa.Peer() == e.Info.Peer {
					delete(w.suspects, sa)
					w.m.DropSA(sa)
					if o, err := w.gmEP.Delete(sa, w.now); err == nil {
						w.gmOutput(o)
					}
				}
			}
		case ike.PeerLostState:
			w.suspects[ev.SA] = true
			w.exec(w.m.PeerLost(ev.SA, w.now))
		case ike.Failed, ike.Deleted, ike.Expired:
			w.note("GM phase 1 with %s: %T", ev.SA.Peer(), ev.Event)
			delete(w.suspects, ev.SA)
			w.exec(w.m.Phase1Down(ev.SA, fmt.Sprintf("%T", ev.Event), false, w.now))
		case ike.Notified:
			w.exec(w.m.Refused(ev.SA, e.Notify.NotifyType, w.now))
		case ike.Phase2:
			if w.m.OwnsPull(ev.SA, e.Msg.Header.MessageID) {
				w.exec(w.m.PullMessage(e.Msg, w.gmAddr.Addr(), w.now))
			}
		}
	}
}

// policy is the KS as GROUPKEY-PULL asks it (the node's pullPolicy): with
// the group's policy and keys laid out once per change (JoinPayload,
// KeysPayload), as the node answers, so that every scenario here also
// checks that layout against rekeys, removals, replaces and restarts.
type policy struct {
	srv *ks.Server
	now time.Time
}

func peerOf(i ike.Info) ks.Peer {
	return ks.Peer{Addr: i.Peer, Identity: i.Peer.Addr().String(), Version: i.PeerVersion}
}

func (p policy) Join(peer ike.Info, id *isakmp.ID) (*isakmp.GroupSA, error) {
	return p.srv.Join(peerOf(peer), id, p.now)
}

func (p policy) Keys(peer ike.Info, id *isakmp.ID, sids uint16) (uint32, *isakmp.KD, error) {
	return p.srv.Keys(peerOf(peer), id, sids, p.now)
}

// ksOutput routes a KS endpoint's datagrams and serves its pulls.
func (w *world) ksOutput(k *keyServer, out ike.Output) {
	for _, p := range out.Send {
		w.queue = append(w.queue, packet{k.addr, p.To, p.Data})
	}
	for _, ev := range out.Events {
		e, ok := ev.Event.(ike.Phase2)
		if !ok {
			continue
		}
		raw, _ := e.Msg.Marshal()
		var reply []byte
		var err error
		if sv := k.serves[e.Msg.Header.MessageID]; sv != nil {
			reply, _, err = sv.Handle(e.Msg, raw)
		} else {
			var sv *gdoi.Serve
			sv, reply, err = gdoi.NewServe(ev.SA, e.Msg, raw, policy{k.srv, w.now}, w.rnd)
			if err == nil {
				k.serves[e.Msg.Header.MessageID] = sv
			}
		}
		if err != nil {
			w.t.Fatalf("KS %s serving a pull: %v", k.addr, err)
		}
		if reply != nil {
			w.queue = append(w.queue, packet{k.addr, ev.SA.Peer(), reply})
		}
	}
}

// deliver moves datagrams until none is left; those to or from a KS that
// is down are lost.
func (w *world) deliver() {
	for len(w.queue) > 0 {
		p := w.queue[0]
		w.queue = w.queue[1:]
		if k := w.ks(p.from); k != nil && k.down {
			continue
		}
		if p.to == w.gmAddr {
			w.gmOutput(w.gmEP.Handle(p.from, p.data, w.now))
			continue
		}
		k := w.ks(p.to)
		if k == nil || k.down {
			continue
		}
		if len(p.data) >= isakmp.HeaderLen && isakmp.ExchangeType(p.data[18]) == isakmp.ExchangePushAck {
			k.ack(w.t, p.data)
			continue
		}
		w.ksOutput(k, k.ep.Handle(p.from, p.data, w.now))
	}
}

// ack records a verified ACK for the KS's last rekey.
func (k *keyServer) ack(t testing.TB, data []byte) {
	m, err := isakmp.ParseMessage(data)
	if err != nil || len(k.rekeys) == 0 {
		t.Fatalf("KS %s: ACK %v", k.addr, err)
	}
	seq, _, err := gdoi.OpenAck(m, k.rekeys[len(k.rekeys)-1].KEK)
	if err != nil {
		t.Fatalf("KS %s: ACK does not verify: %v", k.addr, err)
	}
	k.acks = append(k.acks, seq)
}

// push hands a GROUPKEY-PUSH datagram from a KS to the member (routed by
// its KEK, as the node does) and delivers what that causes.
func (w *world) push(from netip.AddrPort, data []byte) Result {
	var res Result
	if spi, ok := PushSPI(data); ok && w.m.HoldsKEK(spi) {
		res = w.m.Push(Push{From: from, To: w.gmAddr, Data: data, Local: w.gmAddr.Addr()}, w.now)
		w.exec(res)
	}
	w.deliver()
	return res
}

// rekey makes KS k send a rekey now (when it is up) and returns it.
func (w *world) rekey(k *keyServer) *ks.Push {
	p, err := k.srv.Rekey(group, w.now)
	if err != nil {
		w.t.Fatal(err)
	}
	k.rekeys = append(k.rekeys, p)
	w.note("KS %s rekey seq %d", k.addr, p.Seq)
	if !k.down {
		w.push(k.addr, p.Data)
	}
	return p
}

// next is the earliest timer of the world (zero: none before limit).
func (w *world) next() time.Time {
	var next time.Time
	earlier := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	earlier(w.m.Next())
	earlier(w.gmEP.NextTimer())
	for _, k := range w.kss {
		earlier(k.ep.NextTimer())
		if k.pushes && len(k.srv.MemberAddrs(group)) > 0 {
			earlier(k.srv.NextRekey(group))
		}
	}
	return next
}

// run steps the world's timers until `until`, calling check after each
// step (nil: none).
func (w *world) run(until time.Time, check func()) {
	w.deliver()
	for {
		next := w.next()
		if next.IsZero() || next.After(until) {
			w.now = until
			return
		}
		if next.After(w.now) {
			w.now = next
		}
		if t := w.gmEP.NextTimer(); !t.IsZero() && !t.After(w.now) {
			w.gmOutput(w.gmEP.Tick(w.now))
		}
		for _, k := range w.kss {
			if t := k.ep.NextTimer(); !t.IsZero() && !t.After(w.now) {
				w.ksOutput(k, k.ep.Tick(w.now))
			}
			if k.pushes && len(k.srv.MemberAddrs(group)) > 0 && !k.srv.NextRekey(group).After(w.now) {
				w.rekey(k)
			}
		}
		if t := w.m.Next(); !t.IsZero() && !t.After(w.now) {
			w.exec(w.m.Timer(w.now))
		}
		w.deliver()
		if check != nil {
			check()
		}
	}
}

// runFor steps the world for d.
func (w *world) runFor(d time.Duration) { w.run(w.now.Add(d), nil) }

// holdsTEK: the member can encrypt and decrypt now.
func (w *world) holdsTEK() bool { return w.m.holdsTEK(w.now) }

func (w *world) status() Status { return w.m.Status() }

// logged reports whether the member logged the mnemonic.
func (w *world) logged(mnemonic string) bool {
	for _, e := range w.events {
		if e.Mnemonic == mnemonic {
			return true
		}
	}
	return false
}

func (w *world) dump() string { return strings.Join(w.trace, "\n") }

func (p policy) JoinPayload(peer ike.Info, id *isakmp.ID) (gdoi.PolicyAt, error) {
	return p.srv.JoinPayload(peerOf(peer), id, p.now)
}

func (p policy) KeysPayload(peer ike.Info, id *isakmp.ID, sids uint16) (uint32, gdoi.KeysWith, error) {
	return p.srv.KeysPayload(peerOf(peer), id, sids, p.now)
}

var _ gdoi.LaidOutPolicy = policy{}
