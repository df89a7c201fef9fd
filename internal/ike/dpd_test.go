package ike

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// Tests of issue 14 item 2 (crypto isakmp keepalive): the dead peer
// detection timer of RFC 3706, stepped in protocol time.

const (
	dpdInterval = 10 * time.Second
	dpdRetry    = 2 * time.Second
)

// dpdPair establishes one SA between an initiator with cfgI and a
// responder with cfgR at t0, in memory and without running any timer.
func dpdPair(t *testing.T, cfgI, cfgR *Config) (ei, er *Endpoint, si, sr *SA) {
	t.Helper()
	var err error
	if ei, err = NewEndpoint(cfgI, addrI, Limits{}); err != nil {
		t.Fatal(err)
	}
	if er, err = NewEndpoint(cfgR, addrR, Limits{}); err != nil {
		t.Fatal(err)
	}
	_, out, err := ei.Initiate(addrR, t0)
	if err != nil {
		t.Fatal(err)
	}
	Exchange(ei, er, ei, out, t0)
	if len(ei.SAs()) != 1 || len(er.SAs()) != 1 {
		t.Fatalf("not established: %d %d SAs", len(ei.SAs()), len(er.SAs()))
	}
	return ei, er, ei.SAs()[0], er.SAs()[0]
}

func dpdConfig(d DPD) *Config {
	c := pskConfig()
	c.DPD = d
	return c
}

// dpdSeqOf decrypts an R-U-THERE or R-U-THERE-ACK with the receiving SA
// and returns its type and sequence number.
func dpdSeqOf(t *testing.T, to *SA, pkt []byte) (isakmp.NotifyType, uint32) {
	t.Helper()
	m, err := isakmp.ParseMessage(pkt)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := to.decryptInformational(m)
	if err != nil || len(ps) != 2 {
		t.Fatalf("decrypt: %v %v", ps, err)
	}
	n, ok := ps[1].(*isakmp.Notify)
	if !ok || len(n.Data) != 4 {
		t.Fatalf("not a DPD notify: %+v", ps[1])
	}
	return n.NotifyType, binary.BigEndian.Uint32(n.Data)
}

// proves: S7 (issue 14 item 2: keepalive) — an idle SA to a peer that
// answers is probed every SECONDS and stays up; a superseded timer (the
// retransmission an ACK made unnecessary) fires nothing, and a responder
// on demand never probes.
func TestDPDPeerAnswers(t *testing.T) {
	ei, er, si, _ := dpdPair(t, dpdConfig(DPD{Interval: dpdInterval, Retry: dpdRetry}), dpdConfig(DPD{Interval: dpdInterval, Retry: dpdRetry}))
	if got := ei.NextTimer(); !got.Equal(t0.Add(dpdInterval)) {
		t.Fatalf("initiator's first timer at %v, want SECONDS after establishment", got.Sub(t0))
	}
	now := t0
	for round := 0; round < 5; round++ {
		if o := ei.Tick(ei.NextTimer().Add(-time.Millisecond)); len(o.Send)+len(o.Events) != 0 {
			t.Fatalf("round %d: acted before the timer: %+v", round, o)
		}
		now = ei.NextTimer()
		o := ei.Tick(now)
		if len(o.Send) != 1 || len(o.Events) != 0 {
			t.Fatalf("round %d at +%v: %+v", round, now.Sub(t0), o)
		}
		ack := er.Handle(addrI, o.Send[0].Data, now.Add(10*time.Millisecond))
		if len(ack.Send) != 1 {
			t.Fatalf("round %d: R-U-THERE not acknowledged: %+v", round, ack)
		}
		now = now.Add(20 * time.Millisecond)
		if o := ei.Handle(addrR, ack.Send[0].Data, now); len(o.Send)+len(o.Events) != 0 {
			t.Fatalf("round %d: ACK: %+v", round, o)
		}
		if got := ei.NextTimer(); !got.Equal(now.Add(dpdInterval)) {
			t.Fatalf("round %d: next probe at +%v after the ACK, want SECONDS", round, got.Sub(now))
		}
		// The retransmission the ACK made unnecessary is a stale timer.
		if o := ei.Tick(now.Add(dpdRetry)); len(o.Send)+len(o.Events) != 0 {
			t.Fatalf("round %d: stale retransmission timer fired: %+v", round, o)
		}
	}
	if st := ei.Stats; st.DPDSent != 5 || st.DPDAcked != 5 || st.DPDDead != 0 || st.DPDAckUnexpected != 0 {
		t.Fatalf("stats %+v", st)
	}
	if si.State() != StateEstablished || len(ei.SAs()) != 1 {
		t.Fatalf("SA %v", si.State())
	}
	if er.Stats.DPDSent != 0 {
		t.Fatalf("on-demand responder sent %d R-U-THERE", er.Stats.DPDSent)
	}
	// The responder's only timer is the SA's expiry (the first
	// authenticated R-U-THERE ended message 6's retransmission window).
	if got := er.NextTimer(); !got.Equal(si.Info().Expires) {
		t.Fatalf("on-demand responder's timer at %v, want only the SA's expiry", got.Sub(t0))
	}
}

// silentProbe ticks ei through one unanswered probe that starts at start:
// it checks that R-U-THEREs leave at start, start+RETRY, ... (tries of
// them, consecutive sequence numbers), nothing in between, and returns them.
func silentProbe(t *testing.T, ei *Endpoint, sr *SA, start time.Time, tries int) [][]byte {
	t.Helper()
	var sent [][]byte
	var last uint32
	for i := 0; i < tries; i++ {
		at := start.Add(time.Duration(i) * dpdRetry)
		if got := ei.NextTimer(); !got.Equal(at) {
			t.Fatalf("R-U-THERE %d due at +%v, want +%v", i+1, got.Sub(t0), at.Sub(t0))
		}
		if o := ei.Tick(at.Add(-time.Millisecond)); len(o.Send)+len(o.Events) != 0 {
			t.Fatalf("R-U-THERE %d: acted early: %+v", i+1, o)
		}
		o := ei.Tick(at)
		if len(o.Send) != 1 || len(o.Events) != 0 {
			t.Fatalf("R-U-THERE %d at +%v: %+v", i+1, at.Sub(t0), o)
		}
		typ, seq := dpdSeqOf(t, sr, o.Send[0].Data)
		if typ != isakmp.NotifyRUThere || (i > 0 && seq != last+1) {
			t.Fatalf("R-U-THERE %d: %s seq %d after %d", i+1, typ, seq, last)
		}
		last = seq
		sent = append(sent, o.Send[0].Data)
	}
	return sent
}

// proves: S7 (issue 14 item 2: keepalive) — a silent peer gets the first
// R-U-THERE SECONDS after the last proof of life and four more RETRY
// apart, each with the next sequence number, and is declared dead RETRY
// after the fifth (SECONDS + 5*RETRY): the SA fails with ErrDeadPeer and
// leaves the endpoint.
func TestDPDPeerSilent(t *testing.T) {
	ei, _, si, sr := dpdPair(t, dpdConfig(DPD{Interval: dpdInterval, Retry: dpdRetry}), pskConfig())
	silentProbe(t, ei, sr, t0.Add(dpdInterval), DefaultDPDTries)
	deadAt := t0.Add(dpdInterval + DefaultDPDTries*dpdRetry)
	if got := ei.NextTimer(); !got.Equal(deadAt) {
		t.Fatalf("verdict due at +%v, want +%v", got.Sub(t0), deadAt.Sub(t0))
	}
	if o := ei.Tick(deadAt.Add(-time.Millisecond)); len(o.Send)+len(o.Events) != 0 {
		t.Fatalf("dead early: %+v", o)
	}
	o := ei.Tick(deadAt)
	if len(o.Events) != 1 || o.Events[0].SA != si {
		t.Fatalf("verdict: %+v", o)
	}
	f, ok := o.Events[0].Event.(Failed)
	if !ok || !errors.Is(f.Err, ErrDeadPeer) || !errors.Is(f.Err, ErrTimeout) {
		t.Fatalf("verdict event %#v", o.Events[0].Event)
	}
	if si.State() != StateDead || len(ei.SAs()) != 0 || ei.Lookup(si.Cookies()) != nil {
		t.Fatalf("dead SA kept: %v, %d SAs", si.State(), len(ei.SAs()))
	}
	if st := ei.Stats; st.DPDSent != 5 || st.DPDDead != 1 || st.DPDAcked != 0 {
		t.Fatalf("stats %+v", st)
	}
	if !ei.NextTimer().IsZero() {
		t.Fatalf("a timer remains: +%v", ei.NextTimer().Sub(t0))
	}
}

// proves: S2, S5 (issue 14 item 2: keepalive) — only an authenticated
// R-U-THERE-ACK with the sequence number of an R-U-THERE of the probe in
// progress proves the peer alive (RFC 3706 §5.7): an unprotected one, one
// of an earlier probe (a replay), one with another sequence number or
// another SA's cookies is ignored and counted, and the peer is still
// declared dead on time; a late ACK of the probe's first R-U-THERE does
// count.
func TestDPDAckChecks(t *testing.T) {
	ei, _, si, sr := dpdPair(t, dpdConfig(DPD{Interval: dpdInterval, Retry: dpdRetry}), pskConfig())
	ack := func(seq uint32, spi []byte) []byte {
		t.Helper()
		n := &isakmp.Notify{DOI: sr.phase1DOI(), Protocol: isakmp.ProtoISAKMP, NotifyType: isakmp.NotifyRUThereAck, SPI: spi, Data: binary.BigEndian.AppendUint32(nil, seq)}
		b, err := sr.protected([]isakmp.Payload{n})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	icky, rcky := si.Cookies()
	cookies := append(icky[:], rcky[:]...)

	// Probe 1: answered late, by an ACK of its first R-U-THERE while the
	// second is out.
	p1 := silentProbe(t, ei, sr, t0.Add(dpdInterval), 2)
	_, seq1 := dpdSeqOf(t, sr, p1[0])
	at := t0.Add(dpdInterval + dpdRetry + time.Second)
	if o := ei.Handle(addrR, ack(seq1, cookies), at); len(o.Send)+len(o.Events) != 0 || ei.Stats.DPDAcked != 1 {
		t.Fatalf("late ACK of the probe's first R-U-THERE: %+v %+v", o, ei.Stats)
	}

	// Probe 2: every ACK below is ignored.
	start := at.Add(dpdInterval)
	p2 := silentProbe(t, ei, sr, start, 1)
	_, seq2 := dpdSeqOf(t, sr, p2[0])
	unprotected, _ := (&isakmp.Message{Header: isakmp.Header{InitiatorCookie: icky, ResponderCookie: rcky, Exchange: isakmp.ExchangeInformational, MessageID: 7},
		Payloads: []isakmp.Payload{&isakmp.Notify{DOI: isakmp.DOIIPsec, Protocol: isakmp.ProtoISAKMP, NotifyType: isakmp.NotifyRUThereAck, SPI: cookies, Data: binary.BigEndian.AppendUint32(nil, seq2)}}}).Marshal()
	forged := ack(seq2, cookies)
	forged[len(forged)-1] ^= 1 // a wrong HASH(1) (or padding): unauthenticated
	otherSA := append([]byte(nil), cookies...)
	otherSA[0] ^= 1
	for _, bad := range [][]byte{
		ack(seq1, cookies),   // the previous probe's ACK, replayed
		ack(seq2+1, cookies), // an R-U-THERE not sent yet
		ack(seq2-5, cookies), // long ago
		ack(seq2, otherSA),   // another SA's cookies
		unprotected,
		forged,
	} {
		if o := ei.Handle(addrR, bad, start.Add(time.Second)); len(o.Send)+len(o.Events) != 0 {
			t.Fatalf("ignored ACK had effects: %+v", o)
		}
	}
	if st := ei.Stats; st.DPDAcked != 1 || st.DPDAckUnexpected != 4 || st.EstablishedIgnored != 2 {
		t.Fatalf("stats %+v", st)
	}
	silentProbe(t, ei, sr, start.Add(dpdRetry), DefaultDPDTries-1)
	o := ei.Tick(start.Add(DefaultDPDTries * dpdRetry))
	if len(o.Events) != 1 || !errors.Is(o.Events[0].Event.(Failed).Err, ErrDeadPeer) {
		t.Fatalf("peer not declared dead on time: %+v", o)
	}
}

// proves: S7 (issue 14 item 2: keepalive) — periodic probes every SA,
// the responder's too, every SECONDS; a peer's R-U-THERE is answered and
// does not count as an ACK of ours.
func TestDPDPeriodic(t *testing.T) {
	d := DPD{Interval: 15 * time.Second, Retry: 3 * time.Second, Periodic: true}
	ei, er, _, sr := dpdPair(t, dpdConfig(d), dpdConfig(d))
	for _, e := range []*Endpoint{ei, er} {
		if got := e.NextTimer(); !got.Equal(t0.Add(d.Interval)) {
			t.Fatalf("first probe at +%v, want +15s", got.Sub(t0))
		}
	}
	at := t0.Add(d.Interval)
	fromR := er.Tick(at)
	fromI := ei.Tick(at)
	if len(fromR.Send) != 1 || len(fromI.Send) != 1 {
		t.Fatalf("periodic probes: %+v %+v", fromR, fromI)
	}
	// The responder's R-U-THERE reaches the initiator: answered, but our
	// own probe is still out.
	o := ei.Handle(addrR, fromR.Send[0].Data, at)
	if len(o.Send) != 1 || ei.Stats.DPDAcked != 0 || ei.Stats.DPDAckUnexpected != 0 {
		t.Fatalf("peer's R-U-THERE: %+v %+v", o, ei.Stats)
	}
	if typ, _ := dpdSeqOf(t, sr, o.Send[0].Data); typ != isakmp.NotifyRUThereAck {
		t.Fatalf("answer %s", typ)
	}
	if got := ei.NextTimer(); !got.Equal(at.Add(d.Retry)) {
		t.Fatalf("retransmission at +%v", got.Sub(at))
	}
}

// proves: S7 (issue 14 item 2: keepalive) — without a timer nothing is
// sent, and an R-U-THERE sent by hand (Endpoint.DPD) is still acknowledged.
func TestDPDDisabled(t *testing.T) {
	ei, er, si, _ := dpdPair(t, pskConfig(), pskConfig())
	if got := ei.NextTimer(); !got.Equal(si.Info().Expires) {
		t.Fatalf("timer at +%v without keepalive", got.Sub(t0))
	}
	o, err := ei.DPD(si, t0)
	if err != nil {
		t.Fatal(err)
	}
	ack := er.Handle(addrI, o.Send[0].Data, t0)
	ei.Handle(addrR, ack.Send[0].Data, t0)
	if ei.Stats.DPDSent != 1 || ei.Stats.DPDAcked != 1 {
		t.Fatalf("stats %+v", ei.Stats)
	}
}

// proves: O1 (issue 14 item 2: keepalive, applied by a reload) — turning
// the timer on re-arms the established SAs from their last proof of life
// (at once when that is long past), and turning it off stops a probe in
// progress without a verdict.
func TestDPDChanged(t *testing.T) {
	cfg := pskConfig()
	ei, _, si, _ := dpdPair(t, cfg, pskConfig())
	if got := ei.NextTimer(); !got.Equal(si.Info().Expires) {
		t.Fatalf("timer at +%v without keepalive", got.Sub(t0))
	}
	cfg.DPD = DPD{Interval: dpdInterval, Retry: dpdRetry}
	ei.DPDChanged(t0.Add(3 * time.Second))
	if got := ei.NextTimer(); !got.Equal(t0.Add(dpdInterval)) {
		t.Fatalf("after turning it on early: probe at +%v, want +10s", got.Sub(t0))
	}
	cfg.DPD.Interval = 60 * time.Second
	late := t0.Add(5 * time.Minute)
	ei.DPDChanged(late)
	if got := ei.NextTimer(); !got.Equal(late) {
		t.Fatalf("after a reload long after the last proof of life: probe at +%v, want now (+%v)", got.Sub(t0), late.Sub(t0))
	}
	if o := ei.Tick(late); len(o.Send) != 1 {
		t.Fatalf("no R-U-THERE: %+v", o)
	}
	cfg.DPD = DPD{}
	ei.DPDChanged(late.Add(time.Second))
	if got := ei.NextTimer(); !got.Equal(si.Info().Expires) {
		t.Fatalf("after turning it off: timer at +%v", got.Sub(t0))
	}
	if o := ei.Tick(late.Add(time.Hour)); len(o.Events) != 0 || si.State() != StateEstablished {
		t.Fatalf("a stopped probe declared the peer dead: %+v", o)
	}
}

// BenchmarkDPDAnswer is a key server's cost of one member's R-U-THERE:
// decrypt, check HASH(1), build and encrypt the R-U-THERE-ACK.
func BenchmarkDPDAnswer(b *testing.B) {
	ei, _ := NewEndpoint(pskConfig(), addrI, Limits{})
	er, _ := NewEndpoint(pskConfig(), addrR, Limits{})
	_, out, _ := ei.Initiate(addrR, t0)
	Exchange(ei, er, ei, out, t0)
	si := ei.SAs()[0]
	o, err := ei.DPD(si, t0)
	if err != nil {
		b.Fatal(err)
	}
	rut := o.Send[0].Data
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if a := er.Handle(addrI, rut, t0); len(a.Send) != 1 {
			b.Fatal("no ACK")
		}
	}
}
