package ikev2d

import (
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/gikev2"
	"github.com/groupvpn/groupvpn/internal/ikev2"
	"github.com/groupvpn/groupvpn/internal/sadb"
)

// Member timing: a registration that does not complete is retried with
// the next key server after registerRetry; a registered member registers
// again ahead of its TEKs' expiry (reregisterLead of their remaining life,
// with jitter), as a GDOI member does.
const (
	registerRetry  = 10 * time.Second
	reregisterLead = 10 // 1/10 of the TEK's remaining lifetime
)

// member is one group this daemon is a member of: a gikev2.Member (the
// protocol), the IKE SA it registers over, and its timer.
type member struct {
	r      *Router
	g      GMGroup
	m      *gikev2.Member
	server int       // index into g.Servers of the key server in use
	sa     *ikev2.SA // the unicast IKE SA to the key server
	s      *sock     // its socket
	next   time.Time // when timer runs; zero: none
	// pending: the IKE SA is established and GSA_AUTH's response did
	// not register the member (yet: the Response event follows).
	pending bool
	status  MemberStatus // for show
}

// MemberStatus is what show prints of a member group.
type MemberStatus struct {
	Group         string
	Server        netip.AddrPort
	Registered    bool
	Registrations uint64 // succeeded
	Failures      uint64
	Rekeys        uint64 // GSA_REKEYs applied
	LastError     string
	Stats         gikev2.Stats
}

func newMember(r *Router, g GMGroup) *member {
	sids := uint32(0)
	if g.Sender {
		sids = 1
	}
	return &member{r: r, g: g, m: gikev2.NewMember(gikev2.MemberConfig{Name: g.Name, ID: g.ID, Sender: g.Sender, SenderIDs: sids, SAg: true}),
		status: MemberStatus{Group: g.Name}}
}

// Members lists the member groups' status. Use it inside Do.
func (r *Router) Members() []MemberStatus {
	var out []MemberStatus
	for _, m := range r.gm {
		st := m.status
		st.Server = m.g.Servers[m.server]
		st.Stats = m.m.Stats
		out = append(out, st)
	}
	return out
}

// Dataplane is where the members' TEKs go.
func (r *Router) Dataplane() sadb.Dataplane { return r.o.Dataplane }

func (m *member) start(now time.Time) { m.next = now }

// timer: register (again), by a new IKE SA unless the one held stands.
func (m *member) timer(now time.Time) {
	m.next = now.Add(registerRetry)
	if m.sa != nil && m.sa.State() == ikev2.StateEstablished && !m.s.closed {
		m.request(now)
		return
	}
	if m.sa != nil && m.sa.State() != ikev2.StateDead {
		// A registration that did not complete: the next key server.
		m.failed("no answer from " + m.g.Servers[m.server].String())
	}
	to := m.g.Servers[m.server]
	s := m.r.sockFor(to)
	if s == nil {
		m.status.LastError = "no local address of the key server's family"
		return
	}
	sa, out, err := s.ep.InitiateWith(to, m.m.Request().Payloads(), now)
	if err != nil {
		m.failed(err.Error())
		return
	}
	m.sa, m.s = sa, s
	m.r.log.Info("G-IKEv2 registration started", "group", m.g.Name, "ks", to.String(), "local", s.local.String())
	m.r.deliver(s, out, now)
}

func (m *member) failed(why string) {
	m.status.Failures++
	m.status.LastError = why
	m.r.log.Warn("G-IKEv2 registration failed", "group", m.g.Name, "ks", m.g.Servers[m.server].String(), "err", why)
	m.server = (m.server + 1) % len(m.g.Servers)
	m.sa = nil
}

// request sends GSA_REGISTRATION over the established IKE SA.
func (m *member) request(now time.Time) {
	out, err := m.s.ep.Request(m.sa, wire.ExchangeGSARegistration, m.m.Request().Payloads(), now)
	if err != nil {
		m.failed(err.Error())
		return
	}
	m.r.deliver(m.s, out, now)
}

// event takes the IKE SA's events (every member sees every SA's events
// and keeps those of its own SA).
func (m *member) event(s *sock, sa *ikev2.SA, ev ikev2.Event, now time.Time) {
	if sa != m.sa {
		return
	}
	switch e := ev.(type) {
	case ikev2.Established:
		// The keys come in GSA_AUTH's response (RFC 9838 §2.3.1): the
		// Response event follows.
	case ikev2.Response:
		if e.Exchange == wire.ExchangeGSAAuth && !hasGSA(e.Payloads) {
			m.pending = true // a GCKS of the two-exchange form
			return
		}
		if e.Exchange != wire.ExchangeGSARegistration && e.Exchange != wire.ExchangeGSAAuth {
			return
		}
		kwk, err := gikev2.UnicastKWK(sa.Keys(), gikev2.DefaultKWA)
		if err == nil {
			var u *gikev2.Update
			if u, err = m.m.Registered(e.Payloads, kwk, now); err == nil {
				err = m.apply(u, now)
			}
		}
		if err != nil {
			m.failed(err.Error())
			m.next = now.Add(registerRetry)
			return
		}
		m.status.Registered = true
		m.status.Registrations++
		m.status.LastError = ""
		m.r.log.Info("G-IKEv2 registration succeeded", "group", m.g.Name, "ks", sa.Peer().String())
	case ikev2.Failed:
		m.failed(e.Err.Error())
		m.next = now.Add(time.Second)
	case ikev2.Deleted, ikev2.Expired:
		m.sa = nil
	}
}

func hasGSA(ps []wire.Payload) bool {
	for _, p := range ps {
		if _, ok := p.(*wire.GSA); ok {
			return true
		}
	}
	return false
}

// rekey takes a GSA_REKEY under this member's Rekey SA.
func (m *member) rekey(pkt []byte, now time.Time) {
	u, err := m.m.Rekey(pkt, now)
	if err != nil {
		return // counted in m.m.Stats
	}
	if err := m.apply(u, now); err != nil {
		m.status.LastError = err.Error()
		m.r.log.Error("G-IKEv2 rekey not applied", "group", m.g.Name, "err", err.Error())
		return
	}
	m.status.Rekeys++
	m.r.log.Info("G-IKEv2 rekey applied", "group", m.g.Name, "message_id", u.MessageID, "teks", len(u.TEKs),
		"deleted", len(u.DeleteTEKs), "delete_all", u.DeleteAllTEKs, "excluded", u.Excluded)
}

// apply installs an update into the data plane and schedules the next
// registration: before the TEKs expire, or soon after an exclusion
// (SPEC R2, R4).
func (m *member) apply(u *gikev2.Update, now time.Time) error {
	a, err := gikev2.Apply(m.r.o.Dataplane, m.g.Name, u, now)
	if err != nil {
		return err
	}
	if u.RekeyDst.IsValid() && m.s != nil {
		m.r.join(m.g.Name, u.RekeyDst, m.s.local.Addr())
	} else if u.NewKEK && !u.RekeyDst.IsValid() {
		m.r.leaveMulticast(m.g.Name) // the new Rekey SA's rekeys are unicast
	}
	if a.Reregister {
		m.status.Registered = false
		window := 5 * time.Second
		if !a.Until.IsZero() && a.Until.Sub(now) < window {
			window = max(a.Until.Sub(now)/2, time.Millisecond)
		}
		m.next = now.Add(jitter(window))
		m.r.log.Info("G-IKEv2 member excluded: registering again", "group", m.g.Name, "at", m.next.Format(time.RFC3339))
		return nil
	}
	// Re-register ahead of the earliest expiry of the group's TEKs.
	var first time.Time
	for _, t := range m.r.o.Dataplane.TEKs() {
		if t.Group == m.g.Name && (first.IsZero() || t.Expires.Before(first)) {
			first = t.Expires
		}
	}
	if !first.IsZero() {
		left := first.Sub(now)
		m.next = now.Add(left - left/reregisterLead - jitter(left/(2*reregisterLead)))
	}
	return nil
}

// sockGone: the member's socket was closed by a refresh; it registers
// again through another one.
func (m *member) sockGone(s *sock) {
	if m.s == s {
		m.sa, m.s = nil, nil
		if !m.status.Registered {
			m.next = m.r.o.Now()
		}
	}
}

// jitter is a random duration in [0, d).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	var b [8]byte
	rand.Read(b[:])
	return time.Duration(binary.BigEndian.Uint64(b[:]) % uint64(d))
}
