package ike

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"maps"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// Tests of issue 11 ("Hardening"): what unauthenticated input can and
// cannot make an Endpoint do.

func pskSuite() Suite { return Suite{KeyBits: 128, Hash: SHA256, Group: 19, Auth: AuthPSK} }

func pskConfig() *Config {
	return &Config{Suites: []Suite{pskSuite()}, Creds: Credentials{PSK: pskFor("k")}}
}

// mm1 returns a real message 1 of an initiator at addrI.
func mm1(t testing.TB) []byte {
	t.Helper()
	ei, err := NewEndpoint(pskConfig(), addrI, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, out, err := ei.Initiate(addrR, t0)
	if err != nil {
		t.Fatal(err)
	}
	return out.Send[0].Data
}

// withCookie returns pkt with initiator cookie n.
func withCookie(pkt []byte, n uint64) []byte {
	b := append([]byte(nil), pkt...)
	binary.BigEndian.PutUint64(b[0:8], n)
	return b
}

// assertEmpty fails unless e holds no SA, half-open entry or live timer.
func assertEmpty(t *testing.T, e *Endpoint) {
	t.Helper()
	live := 0
	for _, t := range e.timers {
		if t.live() {
			live++
		}
	}
	if len(e.sas) != 0 || len(e.pending) != 0 || e.halfOpen.Len() != 0 || e.keyed.Len() != 0 || len(e.perPeer) != 0 || live != 0 {
		t.Fatalf("state left: %d SAs, %d pending, %d half-open, %d keyed, %d peers, %d live timers", len(e.sas), len(e.pending), e.halfOpen.Len(), e.keyed.Len(), len(e.perPeer), live)
	}
	if len(e.timers) > 64 {
		t.Fatalf("%d timers left", len(e.timers))
	}
}

// proves: S1 (issue 11 item 2) — 100,000 message-1 look-alikes that do
// not complete a message (Encryption flag set, body that does not parse,
// refused proposal) leave no SA, no half-open entry and no timer.
func TestNoStateFromIncompleteMessage1(t *testing.T) {
	resp, err := NewEndpoint(pskConfig(), addrR, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	good := mm1(t)
	encrypted := append([]byte(nil), good...)
	encrypted[19] |= byte(isakmp.FlagEncryption)
	garbage := append(append([]byte(nil), good[:isakmp.HeaderLen]...), bytes.Repeat([]byte{0xee}, 40)...)
	binary.BigEndian.PutUint32(garbage[24:28], uint32(len(garbage)))
	m, _ := isakmp.ParseMessage(good)
	for _, tr := range m.Payloads[0].(*isakmp.SA).Proposals[0].Transforms {
		tr.Attributes = tr.Attributes[1:] // no encryption algorithm: refused
	}
	refused, _ := m.Marshal()
	kinds := [][]byte{encrypted, garbage, refused}
	for i := range 100_000 {
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 500)
		if i%2 == 0 {
			from = addrI // and from one address
		}
		resp.Handle(from, withCookie(kinds[i%3], uint64(i)+1), t0.Add(time.Duration(i)*time.Microsecond))
	}
	assertEmpty(t, resp)
	if resp.Stats.MM1Rejected < 66_000 {
		t.Fatalf("stats %+v", resp.Stats)
	}
	// The refusals went to addresses nothing verified: rate-bounded.
	if resp.Stats.RefusalSent > 40 || resp.Stats.RefusalSent+resp.Stats.RefusalSuppressed != 33_333 {
		t.Fatalf("refusals sent %d, suppressed %d", resp.Stats.RefusalSent, resp.Stats.RefusalSuppressed)
	}
}

// proves: S1, S3 (issue 11 items 2 and 9) — valid message 1 floods keep
// the tables and the timer heap bounded; message 2 is never retransmitted
// on a timer, and every half-open SA expires.
func TestHalfOpenBoundedAndExpire(t *testing.T) {
	resp, err := NewEndpoint(pskConfig(), addrR, Limits{MaxHalfOpen: 1000})
	if err != nil {
		t.Fatal(err)
	}
	good := mm1(t)
	for i := range 100_000 {
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 500)
		if i%2 == 0 {
			from = addrI
		}
		if o := resp.Handle(from, withCookie(good, uint64(i)+1), t0); len(o.Send) != 1 {
			t.Fatalf("message 2 not sent: %+v", o)
		}
	}
	if len(resp.sas) > 1000 || resp.halfOpen.Len() > 1000 || len(resp.pending) > 1000 || len(resp.timers) > 2*1000+64 {
		t.Fatalf("%d SAs, %d half-open, %d pending, %d timers", len(resp.sas), resp.halfOpen.Len(), len(resp.pending), len(resp.timers))
	}
	if l, ok := resp.perPeer[addrI.Addr()]; !ok || l.Len() > 16 {
		t.Fatal("per-peer bound not kept")
	}
	if resp.Stats.HalfOpenEvicted == 0 || resp.Stats.HalfOpenPeerEvicted == 0 {
		t.Fatalf("stats %+v", resp.Stats)
	}
	for _, at := range []time.Duration{2 * time.Second, 6 * time.Second, 29 * time.Second} {
		if o := resp.Tick(t0.Add(at)); len(o.Send) != 0 || len(o.Events) != 0 {
			t.Fatalf("at %v: %d datagrams sent, %d events", at, len(o.Send), len(o.Events))
		}
	}
	o := resp.Tick(t0.Add(31 * time.Second))
	if len(o.Send) != 0 || len(o.Events) != 0 {
		t.Fatalf("expiry sent %d datagrams, %d events", len(o.Send), len(o.Events))
	}
	assertEmpty(t, resp)
	if resp.Stats.HalfOpenExpired != 1000 {
		t.Fatalf("expired %d", resp.Stats.HalfOpenExpired)
	}
}

// proves: S3 (issue 11 item 9) — a repeated message 1 is answered with
// message 2 again, as often as an initiator retransmits and no more.
func TestMessage2ResentOnlyForRepeatedMessage1(t *testing.T) {
	resp, _ := NewEndpoint(pskConfig(), addrR, Limits{})
	pkt := mm1(t)
	first := resp.Handle(addrI, pkt, t0)
	sent := 0
	for range 20 {
		o := resp.Handle(addrI, pkt, t0)
		for _, p := range o.Send {
			if !bytes.Equal(p.Data, first.Send[0].Data) {
				t.Fatal("a different message 2")
			}
			sent++
		}
	}
	if sent != DefaultRetransmit.Tries {
		t.Fatalf("message 2 sent again %d times, want %d", sent, DefaultRetransmit.Tries)
	}
}

// proves: S2 (issue 11 item 4a) — a replayed message 1, spoofed from a
// member's address and port, cannot replace its established SA: the
// responder cookie is unique per SA.
func TestReplayedMessage1KeepsEstablishedSA(t *testing.T) {
	p := newPair(t, pskConfig(), pskConfig())
	_, out, _ := p.i.Initiate(addrR, p.now)
	first := out.Send[0].Data
	p.run(p.i, out)
	sa := p.r.SAs()
	if len(sa) != 1 {
		t.Fatal("not established")
	}
	icky, rcky := sa[0].Cookies()
	for range 3 {
		o := p.r.Handle(addrI, first, p.now)
		if len(o.Send) == 1 {
			h, _ := isakmp.ParseHeader(o.Send[0].Data)
			if h.ResponderCookie == rcky {
				t.Fatal("the replay got the established SA's responder cookie")
			}
		}
	}
	if p.r.Lookup(icky, rcky) != sa[0] || sa[0].State() != StateEstablished || len(p.r.SAs()) != 1 {
		t.Fatal("the established SA was replaced")
	}
}

// forged returns a cleartext datagram with sa's cookies.
func forged(sa *SA, exch isakmp.ExchangeType, ps ...isakmp.Payload) []byte {
	m := &isakmp.Message{Header: isakmp.Header{InitiatorCookie: sa.icky, ResponderCookie: sa.rcky, Exchange: exch}, Payloads: ps}
	b, err := m.Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

// proves: S2 (issue 11 item 4b) — nothing unauthenticated removes an
// established SA, on either side: the 32-octet unknown-payload main-mode
// datagram, any unprotected main-mode message or notification, an
// unprotected Delete, a protected Informational with a wrong HASH(1) or
// that does not decrypt, truncations. Each is counted.
func TestUnauthenticatedInputNeverKillsEstablishedSA(t *testing.T) {
	p := handshake(t, pskConfig(), pskConfig())
	for _, side := range []struct {
		e    *Endpoint
		from netip.AddrPort
	}{{p.r, addrI}, {p.i, addrR}} {
		sa := side.e.SAs()[0]
		var attacks [][]byte
		// The 32-octet datagram of the issue: header + one unknown payload.
		tiny := make([]byte, 32)
		copy(tiny, sa.icky[:])
		copy(tiny[8:], sa.rcky[:])
		tiny[16], tiny[17], tiny[18] = 99, 0x10, byte(isakmp.ExchangeIdentityProt)
		binary.BigEndian.PutUint32(tiny[24:], 32)
		binary.BigEndian.PutUint16(tiny[30:], 4)
		attacks = append(attacks, tiny)
		attacks = append(attacks, forged(sa, isakmp.ExchangeIdentityProt, &isakmp.RawPayload{PayloadType: 99, Body: []byte{1}}))
		attacks = append(attacks, forged(sa, isakmp.ExchangeIdentityProt, &isakmp.KE{Data: make([]byte, 64)}, &isakmp.Nonce{Data: make([]byte, 16)}))
		for _, nt := range []isakmp.NotifyType{isakmp.NotifyInvalidPayloadType, isakmp.NotifyAuthenticationFailed, isakmp.NotifyNoProposalChosen, isakmp.NotifyInvalidCookie} {
			attacks = append(attacks, forged(sa, isakmp.ExchangeInformational, &isakmp.Notify{DOI: isakmp.DOIIPsec, Protocol: isakmp.ProtoISAKMP, NotifyType: nt}))
		}
		attacks = append(attacks, forged(sa, isakmp.ExchangeInformational, &isakmp.Delete{DOI: isakmp.DOIIPsec, Protocol: isakmp.ProtoISAKMP, SPISize: 16, SPIs: [][]byte{append(sa.icky[:], sa.rcky[:]...)}}))
		// A real protected Delete from the peer, altered: wrong hash or
		// garbage after decryption.
		peerSA := p.i.SAs()[0]
		if side.e == p.i {
			peerSA = p.r.SAs()[0]
		}
		d := &isakmp.Delete{DOI: isakmp.DOIIPsec, Protocol: isakmp.ProtoISAKMP, SPISize: 16, SPIs: [][]byte{append(sa.icky[:], sa.rcky[:]...)}}
		real, err := peerSA.protected([]isakmp.Payload{d})
		if err != nil {
			t.Fatal(err)
		}
		for i := isakmp.HeaderLen; i < len(real); i += 7 {
			b := append([]byte(nil), real...)
			b[i] ^= 0x40
			attacks = append(attacks, b)
		}
		for n := range len(real) {
			attacks = append(attacks, real[:n])
		}
		before := side.e.Stats.EstablishedIgnored
		for _, a := range attacks {
			o := side.e.Handle(side.from, a, p.now)
			for _, ev := range o.Events {
				if _, ok := ev.Event.(PeerLostState); !ok {
					t.Fatalf("event %T from forged input", ev.Event)
				}
			}
			if sa.State() != StateEstablished || side.e.Lookup(sa.icky, sa.rcky) != sa {
				t.Fatalf("SA gone after %x", a)
			}
		}
		if side.e.Stats.EstablishedIgnored-before < uint64(len(attacks))/2 {
			t.Fatalf("ignored %d of %d", side.e.Stats.EstablishedIgnored-before, len(attacks))
		}
	}
}

// proves: S2 (issue 11 item 4b) — a forged Informational with the Message
// ID of a phase-2 exchange in progress does not disturb its IV chain.
func TestForgedInformationalKeepsPhase2IVChain(t *testing.T) {
	p := handshake(t, pskConfig(), pskConfig())
	si, sr := p.i.SAs()[0], p.r.SAs()[0]
	const mid = 0x1234
	send := func() {
		t.Helper()
		msg, err := si.EncryptPhase2(isakmp.ExchangePull, mid, []isakmp.Payload{&isakmp.Hash{Data: []byte{1}}, &isakmp.Nonce{Data: make([]byte, 16)}})
		if err != nil {
			t.Fatal(err)
		}
		m, _ := isakmp.ParseMessage(msg)
		if _, err := sr.DecryptPhase2(m); err != nil {
			t.Fatalf("phase-2 message does not decrypt: %v", err)
		}
	}
	send()
	bogus := &isakmp.Message{Header: isakmp.Header{InitiatorCookie: sr.icky, ResponderCookie: sr.rcky, Exchange: isakmp.ExchangeInformational,
		Flags: isakmp.FlagEncryption, MessageID: mid, NextPayload: isakmp.PayloadHash}, Body: bytes.Repeat([]byte{7}, 64)}
	b, _ := bogus.Marshal()
	p.r.Handle(addrI, b, p.now)
	send()
}

// proves: S2 (issue 11 item 4b) — OpenPhase2 advances a Message ID's IV
// chain only for a message its check accepts.
func TestOpenPhase2CommitsOnlyChecked(t *testing.T) {
	p := handshake(t, pskConfig(), pskConfig())
	si, sr := p.i.SAs()[0], p.r.SAs()[0]
	const mid = 0x4321
	seal := func() *isakmp.Message {
		msg, err := si.EncryptPhase2(isakmp.ExchangePull, mid, []isakmp.Payload{&isakmp.Hash{Data: []byte{1}}, &isakmp.Nonce{Data: make([]byte, 16)}})
		if err != nil {
			t.Fatal(err)
		}
		m, _ := isakmp.ParseMessage(msg)
		return m
	}
	ok := func([]isakmp.Payload) error { return nil }
	if _, err := sr.OpenPhase2(seal(), ok); err != nil {
		t.Fatal(err)
	}
	// A message the check refuses (a forgery that happens to parse) is
	// read with the same IV and leaves the chain where it was.
	second := seal()
	forgedCopy := *second
	if _, err := sr.OpenPhase2(&forgedCopy, func([]isakmp.Payload) error { return errors.New("bad HASH") }); err == nil {
		t.Fatal("check ignored")
	}
	if _, err := sr.OpenPhase2(second, ok); err != nil {
		t.Fatalf("the chain moved on a refused message: %v", err)
	}
}

// proves: S3 (issue 11 item 5) — spoofed message 1s from a member's own
// address at ten times its rate do not keep it from establishing.
func TestSpoofedMessage1FloodFromVictimAddress(t *testing.T) {
	resp, _ := NewEndpoint(pskConfig(), addrR, Limits{})
	gm, _ := NewEndpoint(pskConfig(), addrI, Limits{})
	spoof := mm1(t)
	n := uint64(1 << 40)
	flood := func(k int) {
		for range k {
			n++
			resp.Handle(addrI, withCookie(spoof, n), t0) // the victim's address and port
		}
	}
	flood(100)
	_, out, _ := gm.Initiate(addrR, t0)
	established := false
	for step := 0; step < 10 && len(out.Send) > 0; step++ {
		var next Output
		for _, pk := range out.Send {
			flood(5)
			r := resp.Handle(addrI, pk.Data, t0)
			flood(5)
			for _, back := range r.Send {
				o := gm.Handle(addrR, back.Data, t0)
				next.Send = append(next.Send, o.Send...)
				for _, ev := range o.Events {
					if _, ok := ev.Event.(Established); ok {
						established = true
					}
				}
			}
		}
		out = next
	}
	if !established || len(resp.SAs()) != 1 {
		t.Fatalf("the member did not establish during the flood: %+v", resp.Stats)
	}
	if resp.Stats.HalfOpenPeerEvicted == 0 {
		t.Fatal("the flood evicted nothing")
	}
}

// proves: S6 (issue 11 item 7) — one hostile message 1 with 32 proposals
// of 250 transforms, sent 1,000 times, writes a log of bounded size.
func TestHostileMessage1LogBounded(t *testing.T) {
	var logR logBuf
	cfg := pskConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(&logR, &slog.HandlerOptions{Level: slog.LevelDebug}))
	resp, _ := NewEndpoint(cfg, addrR, Limits{})
	saP := &isakmp.SA{DOI: isakmp.DOIIPsec, Situation: isakmp.SituationIdentityOnly}
	for pn := range 32 {
		prop := &isakmp.Proposal{Number: uint8(pn + 1), Protocol: isakmp.ProtoISAKMP}
		for tn := range 250 {
			prop.Transforms = append(prop.Transforms, &isakmp.Transform{Number: uint8(tn + 1), ID: isakmp.TransformKeyIKE})
		}
		saP.Proposals = append(saP.Proposals, prop)
	}
	m := &isakmp.Message{Header: isakmp.Header{InitiatorCookie: isakmp.Cookie{1}, Exchange: isakmp.ExchangeIdentityProt}, Payloads: []isakmp.Payload{saP}}
	pkt, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	in := 0
	start := time.Now()
	for i := range 1000 {
		in += len(pkt)
		resp.Handle(addrI, withCookie(pkt, uint64(i)+1), t0.Add(time.Duration(i)*time.Millisecond))
	}
	// The rate limiter's clock is the records' (wall) time: one more
	// message once its bucket has refilled is let through and says how
	// many were suppressed, however fast the 1,000 went.
	time.Sleep(time.Until(start.Add(1100 * time.Millisecond)))
	in += len(pkt)
	resp.Handle(addrI, withCookie(pkt, 1001), t0.Add(time.Second))
	out := logR.String()
	for _, line := range strings.Split(out, "\n") {
		if len(line) > 2048 {
			t.Fatalf("line of %d bytes: %.300s", len(line), line)
		}
	}
	if len(out) > 64<<10 {
		t.Fatalf("%d bytes of log for %d bytes in", len(out), in)
	}
	if !strings.Contains(out, "more") || !strings.Contains(out, "suppressed=") {
		t.Fatalf("log does not say what it left out: %.2000s", out)
	}
	t.Logf("%d bytes in, %d bytes of log", in, len(out))
}

// refusal sends m (a modified message 1) and returns the notification.
func refusal(t *testing.T, resp *Endpoint, m *isakmp.Message, cookie uint64) isakmp.NotifyType {
	t.Helper()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	o := resp.Handle(addrI, withCookie(b, cookie), t0)
	if len(o.Send) != 1 {
		t.Fatalf("no refusal: %+v", o)
	}
	n, err := isakmp.ParseMessage(o.Send[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	return n.Payloads[0].(*isakmp.Notify).NotifyType
}

// proves: S2 (issue 11 item 11) — message 1 with a non-zero Message ID, an
// unsupported situation or a lifetime below a minute is refused with the
// right notification; the refusals are rate-bounded and counted.
func TestMessage1Refusals(t *testing.T) {
	resp, _ := NewEndpoint(pskConfig(), addrR, Limits{})
	base := func() *isakmp.Message { m, _ := isakmp.ParseMessage(mm1(t)); return m }
	m := base()
	m.Header.MessageID = 7
	if nt := refusal(t, resp, m, 1); nt != isakmp.NotifyInvalidMessageID {
		t.Fatalf("non-zero Message ID: %s", nt)
	}
	m = base()
	m.Payloads[0].(*isakmp.SA).Situation = 2
	if nt := refusal(t, resp, m, 2); nt != isakmp.NotifySituationNotSupported {
		t.Fatalf("situation: %s", nt)
	}
	m = base()
	s := pskSuite()
	s.Lifetime = time.Second
	m.Payloads[0].(*isakmp.SA).Proposals[0].Transforms = []*isakmp.Transform{s.transform(1)}
	if nt := refusal(t, resp, m, 3); nt != isakmp.NotifyNoProposalChosen {
		t.Fatalf("1 s lifetime: %s", nt)
	}
	assertEmpty(t, resp)
	b, _ := m.Marshal()
	for i := range 100 {
		resp.Handle(addrI, withCookie(b, uint64(100+i)), t0)
	}
	if resp.Stats.RefusalSent != 20 || resp.Stats.RefusalSuppressed != 83 || resp.Stats.MM1Rejected != 103 {
		t.Fatalf("stats %+v", resp.Stats)
	}
	// And an initiator refuses a 1 s lifetime chosen by a responder.
	p := handshake(t, pskConfig(), &Config{Suites: []Suite{{KeyBits: 128, Hash: SHA256, Group: 19, Auth: AuthPSK, Lifetime: time.Second}}, Creds: Credentials{PSK: pskFor("k")}})
	if err := p.failure(p.i); p.established(p.i) != nil || err == nil || !strings.Contains(err.Error(), "did not offer") {
		t.Fatalf("initiator accepted a 1 s lifetime: %v", err)
	}
}

// converse runs a main mode between a and resp; datagrams resp sends to
// other addresses are returned.
func converse(t *testing.T, a, resp *Endpoint, now time.Time) (stray []Packet, events []SAEvent) {
	t.Helper()
	_, out, err := a.Initiate(resp.sh.local, now)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		var next Output
		for _, p := range out.Send {
			o := resp.Handle(a.sh.local, p.Data, now)
			events = append(events, o.Events...)
			for _, back := range o.Send {
				if back.To != a.sh.local {
					stray = append(stray, back)
					continue
				}
				r := a.Handle(resp.sh.local, back.Data, now)
				next.Send = append(next.Send, r.Send...)
			}
		}
		out = next
	}
	return stray, events
}

// proves: S2 (issue 11 item 11) — INITIAL-CONTACT drops the SAs of the
// same authenticated identity from any address, and sends each a Delete;
// another identity's SA from the same address stays.
func TestInitialContactByIdentity(t *testing.T) {
	resp, _ := NewEndpoint(pskConfig(), addrR, Limits{})
	idCfg := func(name string) *Config {
		c := pskConfig()
		c.LocalID = &isakmp.ID{IDType: isakmp.IDFQDN, Data: []byte(name)}
		return c
	}
	old, _ := NewEndpoint(idCfg("gm1"), addrI, Limits{})
	other, _ := NewEndpoint(idCfg("gm2"), addrI, Limits{})
	converse(t, old, resp, t0)
	converse(t, other, resp, t0) // same address, another identity: both kept
	if len(resp.SAs()) != 2 {
		t.Fatalf("%d SAs, want 2", len(resp.SAs()))
	}
	oldSA := old.SAs()[0]
	moved, _ := NewEndpoint(idCfg("gm1"), netip.MustParseAddrPort("127.0.0.3:500"), Limits{})
	stray, events := converse(t, moved, resp, t0)
	if len(resp.SAs()) != 2 || resp.Stats.InitialContactDropped != 1 {
		t.Fatalf("%d SAs, stats %+v", len(resp.SAs()), resp.Stats)
	}
	for _, sa := range resp.SAs() {
		if string(sa.Info().PeerID.Data) == "gm1" && sa.Peer() != moved.sh.local {
			t.Fatal("the old gm1 SA is still held")
		}
	}
	deleted := false
	for _, ev := range events {
		if _, ok := ev.Event.(Deleted); ok {
			deleted = true
		}
	}
	if !deleted || len(stray) != 1 || stray[0].To != addrI {
		t.Fatalf("deleted event %v, %d datagrams to old addresses", deleted, len(stray))
	}
	// The old address gets a protected Delete it accepts.
	o := old.Handle(addrR, stray[0].Data, t0)
	if len(o.Events) != 1 || oldSA.State() != StateDead {
		t.Fatalf("old peer did not take the Delete: %+v", o.Events)
	}
}

// proves: S2, groundwork for R3 (issue 11 items 1 and 7) — a key server
// that lost its SAs answers a member's datagrams with INVALID-COOKIE at a
// bounded rate; the member reports PeerLostState once per hintInterval
// and keeps its SA as it is.
func TestInvalidCookieAfterRestart(t *testing.T) {
	p := handshake(t, pskConfig(), pskConfig())
	gmSA := p.i.SAs()[0]
	restarted, _ := NewEndpoint(pskConfig(), addrR, Limits{})
	pull, err := gmSA.EncryptPhase2(isakmp.ExchangePull, 0x55, []isakmp.Payload{&isakmp.Hash{Data: []byte{1}}, &isakmp.Nonce{Data: make([]byte, 16)}})
	if err != nil {
		t.Fatal(err)
	}
	o := restarted.Handle(addrI, pull, p.now)
	if len(o.Send) != 1 || o.Send[0].To != addrI || restarted.Stats.InvalidCookieSent != 1 {
		t.Fatalf("no INVALID-COOKIE: %+v %+v", o, restarted.Stats)
	}
	n, err := isakmp.ParseMessage(o.Send[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	h := n.Header
	if h.InitiatorCookie != gmSA.icky || h.ResponderCookie != gmSA.rcky || h.Exchange != isakmp.ExchangeInformational || h.MessageID == 0 || n.Encrypted() {
		t.Fatalf("header %s", &h)
	}
	if nt := n.Payloads[0].(*isakmp.Notify); nt.NotifyType != isakmp.NotifyInvalidCookie || !bytes.Equal(nt.SPI, append(gmSA.icky[:], gmSA.rcky[:]...)) {
		t.Fatalf("notify %+v", nt)
	}
	hint := func(at time.Time) bool {
		o := p.i.Handle(addrR, o.Send[0].Data, at)
		if gmSA.State() != StateEstablished || p.i.Lookup(gmSA.icky, gmSA.rcky) != gmSA {
			t.Fatal("the SA changed")
		}
		return len(o.Events) == 1 && errors.Is(nil, nil) && func() bool { _, ok := o.Events[0].Event.(PeerLostState); return ok }()
	}
	if !hint(p.now) || hint(p.now.Add(time.Second)) || !hint(p.now.Add(hintInterval)) {
		t.Fatal("PeerLostState not once per hintInterval")
	}
	if p.i.Stats.PeerLostState != 2 {
		t.Fatalf("stats %+v", p.i.Stats)
	}
	// Rate bound, and Informationals are never answered.
	for range 100 {
		restarted.Handle(addrI, pull, p.now)
	}
	if restarted.Stats.InvalidCookieSent != 20 || restarted.Stats.InvalidCookieSuppressed != 81 {
		t.Fatalf("stats %+v", restarted.Stats)
	}
	info := forged(gmSA, isakmp.ExchangeInformational, &isakmp.Notify{DOI: isakmp.DOIIPsec, Protocol: isakmp.ProtoISAKMP, NotifyType: isakmp.NotifyInvalidCookie})
	if o := restarted.Handle(addrI, info, p.now.Add(time.Hour)); len(o.Send) != 0 {
		t.Fatal("an Informational was answered")
	}
}

// proves: issue 18 (a lost GROUPKEY-PULL message 4 built again) —
// EncryptPhase2ChainAfter seals with the last block of the peer's
// message as IV, so that the peer opens it as the next message of that
// chain, and reads and advances no chain of the SA: the one kept in the
// SA itself and those in its map are as they were, and nothing is added
// for a forgotten Message ID; a body not of whole blocks is refused.
func TestEncryptPhase2ChainAfterLeavesTheChains(t *testing.T) {
	p := handshake(t, pskConfig(), pskConfig())
	si, sr := p.i.SAs()[0], p.r.SAs()[0]
	ps := []isakmp.Payload{&isakmp.Hash{Data: []byte{1}}, &isakmp.Nonce{Data: make([]byte, 16)}}
	const done, live, other = 0x1111, 0x2222, 0x3333
	// The peer's message of exchange done, opened by the responder, whose
	// chain is then forgotten (a finished exchange).
	msg, err := si.EncryptPhase2(isakmp.ExchangePull, done, ps)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := isakmp.ParseMessage(msg)
	if _, err := sr.DecryptPhase2(m); err != nil {
		t.Fatal(err)
	}
	sr.ForgetMessageID(done)
	// Two exchanges in progress: one in the SA's slot, one in its map.
	for _, mid := range []uint32{live, other} {
		msg, err := si.EncryptPhase2(isakmp.ExchangePull, mid, ps)
		if err != nil {
			t.Fatal(err)
		}
		pm, _ := isakmp.ParseMessage(msg)
		if _, err := sr.DecryptPhase2(pm); err != nil {
			t.Fatal(err)
		}
	}
	slot, iv, ivs := sr.p2mid, sr.p2iv, maps.Clone(sr.phase2IVs)
	chain, _ := isakmp.AppendPayloads(nil, ps[1:])
	hash, _ := isakmp.MarshalPayload(&isakmp.Hash{Data: []byte{1}})
	hash[0] = byte(isakmp.PayloadNonce)
	chain = append(hash, chain...)
	answer, err := sr.EncryptPhase2ChainAfter(isakmp.ExchangePull, done, isakmp.PayloadHash, chain, m.Body)
	if err != nil {
		t.Fatal(err)
	}
	if sr.p2mid != slot || sr.p2iv != iv || !maps.EqualFunc(sr.phase2IVs, ivs, bytes.Equal) {
		t.Fatalf("the SA's chains changed: slot %#x -> %#x, map %d -> %d", slot, sr.p2mid, len(ivs), len(sr.phase2IVs))
	}
	am, _ := isakmp.ParseMessage(answer)
	got, err := si.DecryptPhase2(am)
	if err != nil || len(got) != 2 {
		t.Fatalf("the peer does not open the answer as the next of its chain: %v", err)
	}
	if _, err := sr.EncryptPhase2ChainAfter(isakmp.ExchangePull, done, isakmp.PayloadHash, chain, m.Body[:len(m.Body)-1]); err == nil {
		t.Fatal("a body not of whole blocks taken as the IV's source")
	}
}
