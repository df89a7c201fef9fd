package ike

import (
	"crypto/aes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// toMM4 plays an initiator at from through message 3 against resp, at now,
// and never sends message 5: what an address that answers message 2 can
// do. It returns the initiator and resp's message 4 (its key pair made and
// the agreement computed), nil if resp dropped message 1 or 3.
func toMM4(t *testing.T, resp *Endpoint, from netip.AddrPort, now time.Time) (*Endpoint, []byte) {
	t.Helper()
	ei, err := NewEndpoint(pskConfig(), from, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, o1, err := ei.Initiate(addrR, now)
	if err != nil {
		t.Fatal(err)
	}
	o2 := resp.Handle(from, o1.Send[0].Data, now)
	if len(o2.Send) != 1 {
		return ei, nil
	}
	o3 := ei.Handle(addrR, o2.Send[0].Data, now)
	if len(o3.Send) != 1 {
		t.Fatalf("the initiator did not answer message 2: %+v", o3)
	}
	if o4 := resp.Handle(from, o3.Send[0].Data, now); len(o4.Send) == 1 {
		return ei, o4.Send[0].Data
	}
	return ei, nil
}

// establish runs a real main mode from from against resp at now.
func establish(t *testing.T, resp *Endpoint, from netip.AddrPort, now time.Time) bool {
	t.Helper()
	gm, err := NewEndpoint(pskConfig(), from, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, out, _ := gm.Initiate(addrR, now)
	for step := 0; step < 10 && len(out.Send) > 0; step++ {
		var next Output
		for _, pk := range out.Send {
			for _, back := range resp.Handle(from, pk.Data, now).Send {
				o := gm.Handle(addrR, back.Data, now)
				next.Send = append(next.Send, o.Send...)
				for _, ev := range o.Events {
					if _, ok := ev.Event.(Established); ok {
						return true
					}
				}
			}
		}
		out = next
	}
	return false
}

// proves: S1 (issue 18: a key server of 100,000 members is worth
// attacking) — one address that answers message 2 and never sends message
// 5 has the responder compute at most MaxHalfOpenPerPeer Diffie-Hellman
// agreements, and hold as many SAs, until they expire, however many
// message 1s and 3s it sends: an SA past message 3 stays half-open until
// message 5 authenticates its peer, and message 1 never evicts it (before,
// it left the half-open lists at message 3: 200 attempts from one address
// were 200 agreements and 200 SAs held for 46 s). Each dropped message 1
// is counted. Another address establishes meanwhile; once the SAs expire
// (message 4's five transmissions, 46 s) nothing is left, and the
// address may try again.
func TestKeyedSAsBoundedPerAddress(t *testing.T) {
	resp, err := NewEndpoint(pskConfig(), addrR, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	attacker := netip.MustParseAddrPort("198.51.100.9:500")
	agreements := 0
	for range 200 {
		if _, m4 := toMM4(t, resp, attacker, t0); m4 != nil {
			agreements++
		}
	}
	checkHalfOpen(t, resp)
	if agreements != 16 || resp.keyed.Len() != 16 || len(resp.sas) != 16 {
		t.Fatalf("%d agreements, %d keyed, %d SAs held for one address; want 16 each", agreements, resp.keyed.Len(), len(resp.sas))
	}
	if resp.Stats.HalfOpenPeerRefused != 200-16 || resp.Stats.HalfOpenPeerEvicted != 0 {
		t.Fatalf("refused %d, evicted %d message 1s; want 184, 0", resp.Stats.HalfOpenPeerRefused, resp.Stats.HalfOpenPeerEvicted)
	}
	if !establish(t, resp, addrI, t0) {
		t.Fatal("another address could not establish")
	}
	checkHalfOpen(t, resp)
	if resp.keyed.Len() != 16 || len(resp.SAs()) != 1 {
		t.Fatalf("%d keyed, %d established", resp.keyed.Len(), len(resp.SAs()))
	}
	// Message 4 is sent again by its timer and the SAs die after the last
	// transmission: bounded in time as in count.
	for at := time.Second; at <= 50*time.Second; at += time.Second {
		resp.Tick(t0.Add(at))
	}
	checkHalfOpen(t, resp)
	if resp.keyed.Len() != 0 || resp.Stats.KeyedExpired != 16 || len(resp.perPeer) != 0 {
		t.Fatalf("after 50 s: %d keyed, %d expired, %d addresses listed", resp.keyed.Len(), resp.Stats.KeyedExpired, len(resp.perPeer))
	}
	if _, m4 := toMM4(t, resp, attacker, t0.Add(51*time.Second)); m4 == nil {
		t.Fatal("the address was refused after its SAs expired")
	}
	checkHalfOpen(t, resp)
	// Reset empties the lists with the tables (a load generator's
	// Endpoints are reused).
	resp.Reset(addrR)
	assertEmpty(t, resp)
	checkHalfOpen(t, resp)
}

// proves: S1, S3 — the SAs past message 3 of all addresses are bounded too
// (MaxKeyed): past it the oldest is evicted and counted, never a newer
// one, so members that send message 5 within a round trip establish while
// addresses that stop after message 3 fill the list; and message 1s
// spoofed from a member's address while it is past message 3 evict only
// SAs still waiting for message 3, never the member's.
func TestKeyedSAsBoundedInAll(t *testing.T) {
	resp, err := NewEndpoint(pskConfig(), addrR, Limits{MaxKeyed: 8})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 500)
		if _, m4 := toMM4(t, resp, from, t0); m4 == nil {
			t.Fatalf("address %d: message 3 not answered", i)
		}
		checkHalfOpen(t, resp)
	}
	if resp.keyed.Len() != 8 || resp.Stats.KeyedEvicted != 32 || len(resp.perPeer) != 8 {
		t.Fatalf("%d keyed, %d evicted, %d addresses listed; want 8, 32, 8", resp.keyed.Len(), resp.Stats.KeyedEvicted, len(resp.perPeer))
	}
	if head := resp.keyed.head.peer.Addr(); head != netip.AddrFrom4([4]byte{203, 0, 113, 32}) {
		t.Fatalf("the oldest kept is %s, want 203.0.113.32: the newest eight kept", head)
	}
	if !establish(t, resp, addrI, t0) {
		t.Fatal("a member could not establish with the list full")
	}
	checkHalfOpen(t, resp)

	// A member past message 3, then 15 spoofed message 1s from its
	// address and 100 more: the member's SA is the address's oldest, but
	// not one a message 1 may evict.
	resp, err = NewEndpoint(pskConfig(), addrR, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	gm, err := NewEndpoint(pskConfig(), addrI, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, g1, _ := gm.Initiate(addrR, t0)
	g2 := resp.Handle(addrI, g1.Send[0].Data, t0)
	g3 := gm.Handle(addrR, g2.Send[0].Data, t0)
	g4 := resp.Handle(addrI, g3.Send[0].Data, t0)
	if len(g4.Send) != 1 {
		t.Fatal("message 3 not answered")
	}
	spoof := mm1(t)
	for i := range 115 {
		resp.Handle(addrI, withCookie(spoof, uint64(1<<40+i)), t0)
	}
	checkHalfOpen(t, resp)
	if l := resp.perPeer[addrI.Addr()]; l.Len() != 16 || l.head.state != StateMM4Sent {
		t.Fatalf("the member's address lists %d SAs, the oldest in state %s", l.Len(), l.head.state)
	}
	g5 := gm.Handle(addrR, g4.Send[0].Data, t0)
	g6 := resp.Handle(addrI, g5.Send[0].Data, t0)
	if len(g6.Send) != 1 || len(resp.SAs()) != 1 {
		t.Fatalf("the member did not establish: %d answers to message 5, %d established", len(g6.Send), len(resp.SAs()))
	}
	checkHalfOpen(t, resp)
	if resp.Stats.HalfOpenPeerEvicted != 100 {
		t.Fatalf("%d spoofed message 1s evicted, want 100", resp.Stats.HalfOpenPeerEvicted)
	}
}

// junkMM5 is a message 5 of the SA whose message 4 is m4: its header,
// the encryption flag, 32 octets of zeros for a body. Anybody who saw
// the cookies can send it; it needs neither the key nor the agreement.
func junkMM5(m4 []byte) []byte {
	m5 := append([]byte(nil), m4[:isakmp.HeaderLen]...)
	m5[16], m5[19] = byte(isakmp.PayloadID), m5[19]|byte(isakmp.FlagEncryption)
	m5 = append(m5, make([]byte, 32)...)
	binary.BigEndian.PutUint32(m5[24:28], uint32(len(m5)))
	return m5
}

// proves: S1 — a message 5 that does not authenticate its peer does not
// free the SA's place among its address's half-open SAs (before, it failed
// the SA at once, and the next message 1 of the address was answered: one
// address sending junk after each message 3 had the responder compute 200
// agreements for 200 attempts, at one instant). The refusal is reported
// once per SA (PeerNotAuthenticated, with the first message's
// notification), and each is counted.
func TestJunkMessage5KeepsItsPlace(t *testing.T) {
	resp, err := NewEndpoint(pskConfig(), addrR, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	attacker := netip.MustParseAddrPort("198.51.100.9:500")
	agreements, reports, notifications := 0, 0, 0
	for range 200 {
		_, m4 := toMM4(t, resp, attacker, t0)
		if m4 == nil {
			continue
		}
		agreements++
		for range 3 {
			o := resp.Handle(attacker, junkMM5(m4), t0)
			notifications += len(o.Send)
			for _, ev := range o.Events {
				if _, ok := ev.Event.(PeerNotAuthenticated); ok {
					reports++
				}
			}
		}
	}
	checkHalfOpen(t, resp)
	if agreements != 16 || resp.keyed.Len() != 16 || resp.Stats.HalfOpenPeerRefused != 200-16 {
		t.Fatalf("%d agreements, %d keyed, %d message 1s refused; want 16, 16, 184", agreements, resp.keyed.Len(), resp.Stats.HalfOpenPeerRefused)
	}
	if reports != 16 || notifications != 16 || resp.Stats.Dropped < 48 {
		t.Fatalf("%d refusals reported, %d notifications sent, %d dropped; want 16, 16, at least 48", reports, notifications, resp.Stats.Dropped)
	}
}

// handshakeToMM5 runs a member at addrI (cfg) through message 4 against
// resp and returns the member's SA, its message 4 and its message 5 (not
// yet delivered), and resp's SA.
func handshakeToMM5(t *testing.T, resp *Endpoint, cfg *Config) (gmSA *SA, m4, m5 []byte, respSA *SA) {
	t.Helper()
	gmSA, _, m4, m5, respSA = handshakeToMM5With3(t, resp, cfg)
	return gmSA, m4, m5, respSA
}

// handshakeToMM5With3 is handshakeToMM5 with the member's message 3.
func handshakeToMM5With3(t *testing.T, resp *Endpoint, cfg *Config) (gmSA *SA, m3, m4, m5 []byte, respSA *SA) {
	t.Helper()
	gm, err := NewEndpoint(cfg, addrI, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, o1, _ := gm.Initiate(addrR, t0)
	o2 := resp.Handle(addrI, o1.Send[0].Data, t0)
	o3 := gm.Handle(addrR, o2.Send[0].Data, t0)
	o4 := resp.Handle(addrI, o3.Send[0].Data, t0)
	o5 := gm.Handle(addrR, o4.Send[0].Data, t0)
	if len(o5.Send) != 1 || len(gm.sas) != 1 || len(resp.sas) != 1 {
		t.Fatalf("no message 5: %+v", o5)
	}
	for _, sa := range gm.sas {
		gmSA = sa
	}
	for _, sa := range resp.sas {
		respSA = sa
	}
	return gmSA, o3.Send[0].Data, o4.Send[0].Data, o5.Send[0].Data, respSA
}

// sealedMM5 is a message 5 under gmSA's keys with payloads ps, built at
// the IV message 5 starts from, gmSA's chain put back after.
func sealedMM5(t *testing.T, gmSA *SA, ps ...isakmp.Payload) []byte {
	t.Helper()
	after := gmSA.hs.iv
	gmSA.hs.iv = gmSA.hs.mk.iv
	m, err := gmSA.marshalEncrypted(ps)
	if err != nil {
		t.Fatal(err)
	}
	gmSA.hs.iv = after
	return m
}

// proves: S2, S3 — a message 5 that does not decrypt (junk with a member's
// cookies from its address, as anybody who saw the cookies can send) does
// not end the responder's SA, changes nothing, and the member's own
// message 5 then establishes both sides (message 6, under the IV chain of
// that message 5, is accepted by the member).
func TestJunkMessage5EndsNothing(t *testing.T) {
	resp, err := NewEndpoint(pskConfig(), addrR, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	gm, err := NewEndpoint(pskConfig(), addrI, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, o1, _ := gm.Initiate(addrR, t0)
	o2 := resp.Handle(addrI, o1.Send[0].Data, t0)
	o3 := gm.Handle(addrR, o2.Send[0].Data, t0)
	o4 := resp.Handle(addrI, o3.Send[0].Data, t0)
	o5 := gm.Handle(addrR, o4.Send[0].Data, t0)
	var respSA *SA
	for _, sa := range resp.sas {
		respSA = sa
	}
	before := respSA.hs.iv
	for range 3 {
		o := resp.Handle(addrI, junkMM5(o4.Send[0].Data), t0)
		if respSA.State() != StateMM4Sent || respSA.hs.iv != before || respSA.hs.peerGaveUp {
			t.Fatalf("after junk as message 5: state %s, IV chain kept %v, gave up %v", respSA.State(), respSA.hs.iv == before, respSA.hs.peerGaveUp)
		}
		for _, ev := range o.Events {
			if _, ok := ev.Event.(Failed); ok {
				t.Fatal("junk as message 5 failed the SA")
			}
		}
	}
	o6 := resp.Handle(addrI, o5.Send[0].Data, t0)
	if len(o6.Send) != 1 || len(resp.SAs()) != 1 {
		t.Fatalf("the member's message 5 did not establish the responder: %d answers", len(o6.Send))
	}
	established := false
	for _, ev := range gm.Handle(addrR, o6.Send[0].Data, t0).Events {
		if _, ok := ev.Event.(Established); ok {
			established = true
		}
	}
	if !established {
		t.Fatal("the member did not accept message 6")
	}
	checkHalfOpen(t, resp)
}

// proves: S1, S2, S3 — a message 5 that does not authenticate its peer
// (a wrong HASH under a pre-shared key, with INITIAL-CONTACT; a body with
// no payload, which "decrypts" under any key) is refused, reported and
// answered once, what it changed before the check (the CBC IV chain, the
// peer's ID, INITIAL-CONTACT) is undone, and the member's own message 5
// still establishes: anybody who saw the cookies could have sent it. An
// SA checks at most mm5Checks of them, one per transmission of message 4:
// after that its message 5s are dropped unchecked, so one agreement buys
// a bounded amount of checking (a message 5 carries certificates its
// sender chose: an untrusted chain replayed is checked 5 times, not
// forever), and a chain longer than maxPeerChain is refused before any
// certificate is parsed. A protected Informational before message 5 (the
// peer gave up, or says so to free its place) ends nothing either; one
// whose HASH(1) does not verify changes nothing.
func TestPeerRefusedKeepsItsPlace(t *testing.T) {
	resp, err := NewEndpoint(pskConfig(), addrR, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	gmSA, m4, m5, respSA := handshakeToMM5(t, resp, pskConfig())
	id, err := gmSA.ourID()
	if err != nil {
		t.Fatal(err)
	}
	ic := &isakmp.Notify{DOI: isakmp.DOIIPsec, Protocol: isakmp.ProtoISAKMP, NotifyType: isakmp.NotifyInitialContact,
		SPI: append(gmSA.icky[:], gmSA.rcky[:]...)}
	wrongHash := sealedMM5(t, gmSA, id, &isakmp.Hash{Data: make([]byte, 32)}, ic)
	noPayload := junkMM5(m4)
	noPayload[16] = 0 // Next Payload NONE: nothing to parse, whatever the key
	before := respSA.hs.iv
	reports, answers := 0, 0
	for _, m := range [][]byte{wrongHash, noPayload, wrongHash} {
		o := resp.Handle(addrI, m, t0)
		answers += len(o.Send)
		for _, ev := range o.Events {
			switch ev.Event.(type) {
			case PeerNotAuthenticated:
				reports++
			case Failed, Established:
				t.Fatalf("event %T", ev.Event)
			}
		}
		if respSA.State() != StateMM4Sent || respSA.hs.iv != before || respSA.peerID != nil || respSA.initialContact {
			t.Fatalf("after a refused message 5: state %s, IV chain kept %v, peer ID %v, INITIAL-CONTACT %v",
				respSA.State(), respSA.hs.iv == before, respSA.peerID, respSA.initialContact)
		}
	}
	if reports != 1 || answers != 1 || resp.Stats.Dropped < 3 {
		t.Fatalf("%d reports, %d answers, %d dropped; want 1, 1, at least 3", reports, answers, resp.Stats.Dropped)
	}
	if o := resp.Handle(addrI, m5, t0); len(o.Send) != 1 || len(resp.SAs()) != 1 {
		t.Fatal("the member's own message 5 did not establish after refused ones")
	}
	checkHalfOpen(t, resp)

	// mm5Checks refused: the member's own message 5 is dropped unchecked.
	resp, err = NewEndpoint(pskConfig(), addrR, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, m4, m5, respSA = handshakeToMM5(t, resp, pskConfig())
	for range mm5Checks {
		resp.Handle(addrI, junkMM5(m4), t0)
	}
	if o := resp.Handle(addrI, m5, t0); len(o.Send) != 0 || len(resp.SAs()) != 0 || int(respSA.hs.mm5Refused) != mm5Checks {
		t.Fatalf("after %d refusals: %d answers, %d established, %d refused", mm5Checks, len(o.Send), len(resp.SAs()), respSA.hs.mm5Refused)
	}

	// An untrusted chain (a signature that verifies), replayed: checked
	// mm5Checks times; a chain of 9 refused unparsed.
	s := Suite{KeyBits: 256, Hash: SHA256, Group: 19, Auth: AuthECDSA256}
	resp, err = NewEndpoint(&Config{Suites: []Suite{s}, Creds: newTestPKI(t, "some other CA").creds("ecdsa-256")}, addrR, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	gmCreds := pki(t).creds("ecdsa-256")
	gmSA, _, m5, respSA = handshakeToMM5(t, resp, &Config{Suites: []Suite{s}, Creds: gmCreds})
	reports, answers = 0, 0
	var why error
	for range mm5Checks + 2 {
		o := resp.Handle(addrI, m5, t0)
		answers += len(o.Send)
		for _, ev := range o.Events {
			if r, ok := ev.Event.(PeerNotAuthenticated); ok {
				reports++
				why = r.Err
			}
		}
	}
	// The chain is checked before the signature: a signature under a key
	// the sender chose costs nothing until the chain is one we trust.
	if why == nil || !strings.Contains(why.Error(), "untrusted certificate") {
		t.Fatalf("refused for %v, want an untrusted certificate", why)
	}
	if reports != 1 || answers != 1 || int(respSA.hs.mm5Refused) != mm5Checks || respSA.State() != StateMM4Sent || resp.Stats.Dropped != mm5Checks+2 {
		t.Fatalf("%d reports, %d answers, %d checked, state %s, %d dropped; want 1, 1, %d, MM4_SENT, %d",
			reports, answers, respSA.hs.mm5Refused, respSA.State(), resp.Stats.Dropped, mm5Checks, mm5Checks+2)
	}
	checkHalfOpen(t, resp)
	if resp.keyed.Len() != 1 || resp.perPeer[addrI.Addr()].Len() != 1 {
		t.Fatalf("the SA's place: %d keyed, %d listed for its address", resp.keyed.Len(), resp.perPeer[addrI.Addr()].Len())
	}
	resp, err = NewEndpoint(&Config{Suites: []Suite{s}, Creds: pki(t).creds("ecdsa-256")}, addrR, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	gmSA, _, _, _ = handshakeToMM5(t, resp, &Config{Suites: []Suite{s}, Creds: gmCreds})
	id, err = gmSA.ourID()
	if err != nil {
		t.Fatal(err)
	}
	long := []isakmp.Payload{id}
	for range maxPeerChain + 1 {
		long = append(long, &isakmp.Cert{Encoding: isakmp.CertX509Sig, Data: gmCreds.Chain[0]})
	}
	long = append(long, &isakmp.Sig{Data: make([]byte, 64)})
	var refusal error
	for _, ev := range resp.Handle(addrI, sealedMM5(t, gmSA, long...), t0).Events {
		if r, ok := ev.Event.(PeerNotAuthenticated); ok {
			refusal = r.Err
		}
	}
	if refusal == nil || !strings.Contains(refusal.Error(), "9 certificates (at most 8)") {
		t.Fatalf("a chain of 9: %v", refusal)
	}

	// A protected Informational (an error notification) before message 5.
	resp, err = NewEndpoint(pskConfig(), addrR, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	gmSA, _, m5, respSA = handshakeToMM5(t, resp, pskConfig())
	notify := gaveUp(t, gmSA)
	forged := append([]byte(nil), notify...)
	// The second ciphertext block changed: the HASH payload's middle
	// garbled and its byte 28 flipped, the payloads still parse, HASH(1)
	// no longer verifies.
	forged[isakmp.HeaderLen+aes.BlockSize] ^= 1
	if resp.Handle(addrI, forged, t0); respSA.hs.peerGaveUp || respSA.State() != StateMM4Sent {
		t.Fatal("a protected Informational whose HASH(1) does not verify changed the SA")
	}
	if o := resp.Handle(addrI, notify, t0); len(o.Events) != 0 || respSA.State() != StateMM4Sent || !respSA.hs.peerGaveUp {
		t.Fatalf("after a protected Informational: %d events, state %s", len(o.Events), respSA.State())
	}
	if o := resp.Handle(addrI, m5, t0); len(o.Send) != 0 || len(resp.SAs()) != 0 {
		t.Fatal("a message 5 was verified after the peer gave up")
	}
	checkHalfOpen(t, resp)
	if resp.keyed.Len() != 1 {
		t.Fatalf("%d keyed: the SA's place was freed", resp.keyed.Len())
	}
	for at := time.Second; at <= 50*time.Second; at += time.Second {
		resp.Tick(t0.Add(at))
	}
	assertEmpty(t, resp)
	if resp.Stats.KeyedExpired != 1 {
		t.Fatalf("keyed_expired %d", resp.Stats.KeyedExpired)
	}
}

// gaveUp is gmSA's protected error notification as it would send it
// instead of its message 5 (the IV chain as it stood before message 5).
func gaveUp(t *testing.T, gmSA *SA) []byte {
	t.Helper()
	gmSA.hs.iv = gmSA.hs.mk.iv
	gmSA.seed()
	notify, err := gmSA.notifyMessage(isakmp.NotifyPayloadMalformed, true)
	if err != nil {
		t.Fatal(err)
	}
	return notify
}

// proves: S1 — a responder's SA whose peer gave up (a protected
// Informational before message 5) or that had its mm5Checks checks of
// message 5 drops every later message 5 unchecked, so it no longer sends
// message 4, neither by its timer nor for a repeated message 3; it keeps
// its place among its address's half-open SAs on the same schedule and
// expires when it would have (before, it went on retransmitting message 4
// to the end). An SA with checks left still retransmits.
func TestGivenUpSAsNoLongerRetransmit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		junk   int  // message 5s refused
		gaveUp bool // a protected Informational
		sends  bool // message 4 still sent
	}{
		{"checks left", mm5Checks - 1, false, true},
		{"checks spent", mm5Checks, false, false},
		{"peer gave up", 0, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := NewEndpoint(pskConfig(), addrR, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			gmSA, m3, m4, _, respSA := handshakeToMM5With3(t, resp, pskConfig())
			for range tc.junk {
				resp.Handle(addrI, junkMM5(m4), t0)
			}
			if tc.gaveUp {
				resp.Handle(addrI, gaveUp(t, gmSA), t0)
			}
			if respSA.waitsUnanswered() == tc.sends {
				t.Fatalf("waitsUnanswered %v", respSA.waitsUnanswered())
			}
			if o := resp.Handle(addrI, m3, t0); (len(o.Send) == 1) != tc.sends {
				t.Fatalf("message 3 again: %d answers", len(o.Send))
			}
			sent, lastAt := 0, time.Duration(0)
			for at := time.Second; at <= 50*time.Second; at += time.Second {
				sent += len(resp.Tick(t0.Add(at)).Send)
				if resp.keyed.Len() == 1 {
					lastAt = at
				}
			}
			if (sent > 0) != tc.sends || (tc.sends && sent != DefaultRetransmit.Tries-1) {
				t.Fatalf("%d transmissions of message 4 by its timer", sent)
			}
			// Held for the same time either way: the schedule of message
			// 4's transmissions (1+2+4+8+16+15 s: gone at 46 s).
			if lastAt < 40*time.Second || lastAt >= 50*time.Second || resp.Stats.KeyedExpired != 1 {
				t.Fatalf("its place held until %s, keyed_expired %d", lastAt, resp.Stats.KeyedExpired)
			}
			assertEmpty(t, resp)
		})
	}
}
