package ikev2d

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/gikev2"
	"github.com/groupvpn/groupvpn/internal/ikev2"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/mcast"
	"github.com/groupvpn/groupvpn/internal/ratelog"
	"github.com/groupvpn/groupvpn/isakmp"
)

// ksRole is the G-IKEv2 key server: ks.Server decides (authorization,
// members, Sender-IDs, keys, the rekey schedule), gikev2.GCKS builds the
// messages. The router only carries them.
type ksRole struct {
	r    *Router
	srv  *ks.Server
	gcks *gikev2.GCKS
	// Stats of the key-server side (SPEC S5).
	Registered, Refused, Rekeys, Resent, Left uint64
	// refuseLim rate-limits, per peer, the line of a refused registration
	// and of a member's leave (internal/ratelog Keyed: 10 at once, then 1
	// a second, with the count of what it suppressed): a member with an
	// IKE SA may repeat either without pause (SPEC S6).
	refuseLim *ratelog.Handler
	// resend are the GSA_REKEYs still to be sent again (RFC 9838 has no
	// acknowledgement: each goes out 1 + RekeyPolicy.Retransmits times,
	// RekeyPolicy.Retransmit apart, bitwise identical); a newer rekey of
	// the group replaces its group's entry.
	resend []resend
	// ids maps the groups' numbers (IDg) to their names.
	ids map[uint32]string
	// saver writes the state (nil without a Store); dirty are the groups
	// whose members changed since their state was last queued, queued no
	// earlier than saveAt (ks.SaveInterval apart).
	saver    *saver
	dirty    map[string]bool
	saveAt   time.Time
	lastSave time.Time
}

// resend is one GSA_REKEY's pending retransmissions.
type resend struct {
	group string
	push  *gikev2.Push
	to    []netip.AddrPort
	at    time.Time
	every time.Duration
	left  int
}

func newKSRole(r *Router, groups []ks.GroupConfig, now time.Time) (*ksRole, error) {
	srv := ks.New(ks.Options{Rand: r.o.Rand, Logger: r.log, Now: r.o.Now})
	for _, g := range groups {
		if err := srv.AddGroup(g, now); err != nil {
			return nil, fmt.Errorf("ikev2d: key-server group %s: %w", g.Name, err)
		}
	}
	k := &ksRole{r: r, srv: srv, gcks: gikev2.NewGCKS(srv, r.o.Rand), ids: map[uint32]string{}, dirty: map[string]bool{},
		refuseLim: ratelog.New(r.log.Handler(), ratelog.Options{Now: r.o.Now})}
	for _, g := range groups {
		k.ids[g.ID] = g.Name
	}
	if st := r.o.Store; st != nil {
		k.saver = newSaver(st, r.log)
		saved, err := st.LoadGroups()
		if err != nil {
			return nil, fmt.Errorf("ikev2d: key-server state: %w", err)
		}
		for _, gs := range saved {
			if err := srv.Restore(gs, now); err != nil {
				r.log.Warn("stored group not restored", "group", gs.Name, "err", err.Error())
				continue
			}
			// The Rekey SA goes on from a Message ID above every one sent
			// before the restart: ks's sequence number advances once per
			// rekey and is durable before each is sent (write before
			// send), and a Rekey SA's Message IDs start at 0 with its KEK.
			if err := k.gcks.Resume(gs.Name, srv.Seq(gs.Name), now); err != nil {
				r.log.Warn("Rekey SA not resumed", "group", gs.Name, "err", err.Error())
			}
			r.log.Info("key-server state restored", "group", gs.Name, "seq", srv.Seq(gs.Name), "members", len(gs.Members))
		}
		for _, name := range srv.Groups() {
			if err := k.save(name, now, true); err != nil {
				return nil, err
			}
		}
	}
	return k, nil
}

// Server is the key server's ks.Server (show commands; nil without
// key-server groups). Use it inside Do.
func (r *Router) Server() *ks.Server {
	if r.ks == nil {
		return nil
	}
	return r.ks.srv
}

// save writes the group's state (members when withMembers) before what
// depends on it is sent (SPEC O4).
func (k *ksRole) save(name string, now time.Time, withMembers bool) error {
	if k.saver == nil {
		return nil
	}
	var gs *ks.GroupState
	var err error
	if withMembers {
		if gs, err = k.srv.State(name, now); err != nil {
			return err
		}
		delete(k.dirty, name)
		err = k.saver.SaveGroup(gs)
	} else {
		// The keys alone, built without copying the members (a
		// registration given Sender-IDs writes them before its answer:
		// with a State here each one cost O(members), issue 18). The
		// writer may still hold the group's last queued state, which it
		// then writes whole with these keys (SaveKeysOrdered): with the
		// members as queued, the newer changes being dirty and queued
		// next (markDirty). The loop keeps no copy of a queued state: the
		// writer drops it once written (it kept one per group for ever).
		if gs, err = k.srv.KeysState(name, now); err != nil {
			return err
		}
		gs.Members = nil
		err = k.saver.SaveKeysOrdered(gs)
	}
	if err != nil {
		return fmt.Errorf("ikev2d: saving group %s: %w", name, err)
	}
	k.srv.MarkSaved()
	return nil
}

// onAuth answers GSA_AUTH once the member is authenticated, before the
// IKE SA is established (RFC 9838 §2.3.1, §2.3.4): the registration's GSA
// and KD wrapped under the SA's GSK_w go in the response itself; a refusal
// (INVALID_GROUP_ID, AUTHORIZATION_FAILED, ...) establishes nothing.
func (k *ksRole) onAuth(sa *ikev2.SA, ps []wire.Payload) ([]wire.Payload, error) {
	now := k.r.o.Now()
	out, err := k.register(sa, ps, now)
	if err != nil {
		k.refused(sa, err)
		return nil, &ikev2.Refusal{Notify: notifyOf(err), Err: err}
	}
	return out, nil
}

// refused counts a refused registration and logs it, rate-limited per
// peer.
func (k *ksRole) refused(sa *ikev2.SA, err error) {
	k.Refused++
	slog.New(k.refuseLim.Keyed(sa.Peer().Addr().String())).Warn("G-IKEv2 registration refused", "peer", sa.Peer().String(), "err", err.Error())
}

// LogSuppressed is how many lines of refused registrations the rate
// limiters suppressed (this role's and its key server's).
func (k *ksRole) LogSuppressed() uint64 { return k.refuseLim.Suppressed() + k.srv.LogSuppressed() }

func notifyOf(err error) wire.NotifyType {
	var rf *gikev2.RefusedError
	if errors.As(err, &rf) {
		return rf.Notify
	}
	return wire.NotifyRegistrationFailed
}

// request answers a member's GSA_REGISTRATION on an established IKE SA.
func (k *ksRole) request(s *sock, sa *ikev2.SA, e ikev2.Request, now time.Time) {
	var ps []wire.Payload
	var err error
	switch e.Exchange {
	case wire.ExchangeGSARegistration:
		ps, err = k.register(sa, e.Payloads, now)
	default:
		err = &gikev2.RefusedError{Notify: wire.NotifyInvalidSyntax, Err: fmt.Errorf("exchange %s is not one a GCKS answers", e.Exchange)}
	}
	if err != nil {
		k.refused(sa, err)
		ps = gikev2.Refusal(err)
	}
	out, rerr := s.ep.Respond(sa, ps, now)
	if rerr != nil {
		k.r.log.Warn("G-IKEv2 answer not sent", "peer", sa.Peer().String(), "err", rerr.Error())
		return
	}
	k.r.deliver(s, out, now)
}

func (k *ksRole) register(sa *ikev2.SA, payloads []wire.Payload, now time.Time) ([]wire.Payload, error) {
	req, err := gikev2.ParseRequest(payloads)
	if err != nil {
		return nil, err
	}
	kwk, err := gikev2.UnicastKWK(sa.Keys(), gikev2.DefaultKWA)
	if err != nil {
		return nil, err
	}
	info := sa.Info() // PeerID and PeerCert are set once authenticated
	peer := ks.Peer{Addr: sa.Peer(), Identity: info.PeerID.String()}
	if c := info.PeerCert; c != nil {
		peer.Identity, peer.CertSubject = c.Subject.String(), c.Subject.String()
	}
	ps, err := k.gcks.Register(peer, req, kwk, now)
	if err != nil {
		return nil, err
	}
	if req.Leave != 0 {
		// ks has no single-member removal: the member stays listed and
		// leaves the unicast rekey list when it misses rekeys. Counted
		// for a member of the group only, and logged rate-limited per
		// peer: any authenticated member may repeat it without pause.
		if name, ok := k.ids[req.Group]; ok {
			if _, member := k.srv.Member(name, peer.Addr.Addr()); member {
				k.Left++
				slog.New(k.refuseLim.Keyed(sa.Peer().Addr().String())).Info("G-IKEv2 member left", "peer", sa.Peer().String(), "group", req.Group)
			}
		}
	}
	if name, ok := k.ids[req.Group]; ok && req.Leave == 0 && k.saver != nil {
		// The member is bookkeeping, written off the loop (saveDirty); the
		// Sender-IDs it was given move the group's keys (their counter):
		// written before the answer, so that a restarted KS never gives
		// them again (write before send).
		k.markDirty(name, now)
		if m, ok := k.srv.Member(name, peer.Addr.Addr()); ok && len(m.SenderIDs) > 0 {
			if err := k.save(name, now, false); err != nil {
				return nil, &gikev2.RefusedError{Notify: wire.NotifyRegistrationFailed, Err: err}
			}
		}
	}
	if req.Leave == 0 {
		k.Registered++
		k.r.log.Info("G-IKEv2 member registered", "peer", sa.Peer().String(), "identity", peer.Identity, "group", req.Group)
	}
	return ps, nil
}

// markDirty notes that group name's members changed: its state is queued
// for the writer at saveAt, ks.SaveInterval after the last queued one.
func (k *ksRole) markDirty(name string, now time.Time) {
	k.dirty[name] = true
	if k.saveAt.IsZero() {
		k.saveAt = k.lastSave.Add(ks.SaveInterval)
		if k.saveAt.Before(now) {
			k.saveAt = now
		}
	}
}

// saveDirty queues the state of every dirty group for the writer (once
// per group per ks.SaveInterval, not per registration): the members
// changed since the group's last one (ks.Server.DeltaState, issue 18),
// which the writer merges into one it has not written yet.
func (k *ksRole) saveDirty(now time.Time) {
	for name := range k.dirty {
		gs, err := k.srv.DeltaState(name, now)
		if err != nil {
			k.r.log.Warn("key server state not saved", "group", name, "err", err.Error())
			continue
		}
		k.saver.Queue(gs)
	}
	clear(k.dirty)
	k.saveAt, k.lastSave = time.Time{}, now
}

func (k *ksRole) nextTimer() time.Time {
	next := k.saveAt
	for _, r := range k.resend {
		if next.IsZero() || r.at.Before(next) {
			next = r.at
		}
	}
	for _, name := range k.srv.Groups() {
		if t := k.srv.NextRekey(name); !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return next
}

func (k *ksRole) tick(now time.Time) {
	if !k.saveAt.IsZero() && !k.saveAt.After(now) {
		k.saveDirty(now)
	}
	keep := k.resend[:0]
	for _, r := range k.resend {
		if !r.at.After(now) {
			k.send(r.group, r.push, r.to)
			k.Resent++
			r.left--
			r.at = now.Add(r.every)
		}
		if r.left > 0 {
			keep = append(keep, r)
		}
	}
	k.resend = keep
	for _, name := range k.srv.Groups() {
		if t := k.srv.NextRekey(name); !t.IsZero() && !t.After(now) {
			if err := k.Rekey(name, now); err != nil {
				k.r.log.Error("G-IKEv2 rekey failed", "group", name, "err", err.Error())
			}
		}
	}
}

// Rekey advances group name's keys (ks) and sends the GSA_REKEY to every
// member (unicast) or to the group's multicast address. Use it inside Do
// (clear crypto gdoi ks ... / crypto gdoi ks rekey).
func (r *Router) Rekey(name string) error {
	if r.ks == nil {
		return errors.New("ikev2d: not a key server")
	}
	return r.ks.Rekey(name, r.o.Now())
}

// Rekey is the scheduled or commanded rekey of group name.
func (k *ksRole) Rekey(name string, now time.Time) error {
	p, err := k.srv.Rekey(name, now)
	if err != nil {
		return err
	}
	return k.push(name, p, func() (*gikev2.Push, error) { return k.gcks.Rekey(name, now) }, now)
}

// Replace is the policy replace of group name (SPEC P2-P4): ks's replace
// rekey, then the G-IKEv2 GSA_REKEY deleting the old TEKs.
func (r *Router) Replace(name string, replaceNow bool) error {
	if r.ks == nil {
		return errors.New("ikev2d: not a key server")
	}
	now := r.o.Now()
	mode := isakmp.ModeShorten
	if replaceNow {
		mode = isakmp.ModeNow
	}
	p, err := r.ks.srv.ReplaceRekey(name, mode, now)
	if err != nil {
		return err
	}
	return r.ks.push(name, p, func() (*gikev2.Push, error) { return r.ks.gcks.Replace(name, replaceNow, now) }, now)
}

// Remove excludes every member of group name (SPEC R1, R4): the GSA_REKEY
// with D(GIKE_UPDATE) under the Rekey SA they hold, then ks's new keys
// for the members that register again.
func (r *Router) Remove(name string, now bool) error {
	if r.ks == nil {
		return errors.New("ikev2d: not a key server")
	}
	if err := r.ks.srv.CheckPrimaryRemoval(name); err != nil {
		return err
	}
	t := r.o.Now()
	members := r.ks.members(name)
	// No member holds a Rekey SA of the group yet: there is nobody to
	// tell, and ks's new keys go to the next registration (as isakmpd's
	// removal of a group without members: done, nothing sent).
	_, held := r.ks.gcks.NextMessageIDs()[name]
	var gp *gikev2.Push
	var gerr error
	if held {
		gp, gerr = r.ks.gcks.Remove(name, now)
	}
	if _, err := r.ks.srv.Remove(name, now, t); err != nil {
		return err
	}
	if err := r.ks.save(name, t, true); err != nil {
		return err
	}
	if gerr != nil {
		return gerr
	}
	if !held {
		r.log.Info("G-IKEv2 removal: no member to send it to", "group", name)
		return nil
	}
	r.ks.send(name, gp, members)
	r.ks.retransmit(name, gp, members, t)
	return nil
}

// members are the unicast destinations of group name: where each member
// registered from.
func (k *ksRole) members(name string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, a := range k.srv.MemberAddrs(name) {
		if m, ok := k.srv.Member(name, a); ok && !m.Removed {
			out = append(out, netip.AddrPortFrom(m.Address, m.Port))
		}
	}
	return out
}

// push persists the keys ks advanced (write before send), builds the
// G-IKEv2 message and sends it. The members are written with the keys:
// those registered since the last save carry their Sender-IDs into the
// new keys, and a restart must know them or it gives their IDs out again
// under those keys (identical AES-GCM nonces; issue 18 review, as
// ks.Delivery's rekeys).
func (k *ksRole) push(name string, p *ks.Push, build func() (*gikev2.Push, error), now time.Time) error {
	if err := k.save(name, now, true); err != nil {
		return err
	}
	if _, ok := k.gcks.NextMessageIDs()[name]; !ok {
		// No member holds a Rekey SA of the group yet: the next
		// registration gets the keys ks just made.
		k.r.log.Info("G-IKEv2 rekey: no member to send it to", "group", name, "seq", p.Seq)
		return nil
	}
	gp, err := build()
	if err != nil {
		return err
	}
	var to []netip.AddrPort
	if pol := k.srv.RekeyPolicy(name); !pol.Unicast && pol.Multicast.IsValid() {
		to = []netip.AddrPort{pol.Multicast}
	} else {
		to = k.members(name)
	}
	k.Rekeys++
	k.r.log.Info("G-IKEv2 rekey sent", "group", name, "message_id", gp.MessageID, "seq", p.Seq, "to", len(to))
	k.send(name, gp, to)
	k.srv.LogRekey(p, k.srv.Address(name)) // isakmpd's KS_SEND_*_REKEY line
	k.retransmit(name, gp, to, now)
	return nil
}

// retransmit schedules the group's GSA_REKEY again, replacing an older
// one of the group still pending.
func (k *ksRole) retransmit(name string, gp *gikev2.Push, to []netip.AddrPort, now time.Time) {
	k.resend = slices.DeleteFunc(k.resend, func(r resend) bool { return r.group == name })
	pol := k.srv.RekeyPolicy(name)
	if pol.Retransmits > 0 && len(to) > 0 {
		k.resend = append(k.resend, resend{group: name, push: gp, to: to, at: now.Add(pol.Retransmit), every: pol.Retransmit, left: pol.Retransmits})
	}
}

// send writes one GSA_REKEY to each destination, from the group's
// address when it is served, else from the first socket of the family.
func (k *ksRole) send(name string, gp *gikev2.Push, to []netip.AddrPort) {
	from := k.srv.Address(name)
	for _, a := range to {
		s := k.r.sockFor(a)
		for _, c := range k.r.socks {
			if !c.plain && c.local.Addr() == from {
				s = c
			}
		}
		if s == nil {
			continue
		}
		if a.Addr().IsMulticast() && !s.mcOpts {
			// The group's rekey interface and TTL (rekey address ipv4,
			// RFC 6407 §4.2's SAK destination, as isakmpd).
			pol := k.srv.RekeyPolicy(name)
			var err error
			switch c := s.conn.(type) {
			case *net.UDPConn:
				err = mcast.SetMulticastOptions(c, pol.Interface, pol.TTL)
			case interface{ SetMulticastOptions(string, int) error }:
				err = c.SetMulticastOptions(pol.Interface, pol.TTL)
			}
			if err != nil {
				k.r.log.Warn("multicast options not set; the rekey leaves with the defaults", "group", name, "err", err.Error())
			}
			s.mcOpts = true
		}
		s.conn.WriteToUDPAddrPort(gp.Data, a)
	}
}
