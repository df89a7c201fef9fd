package ike

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// The key server's suite in `bench scale`: GDOI DOI, PSK, ECP-256,
// AES-256, SHA-256.
func ksSuite() Suite { return Suite{KeyBits: 256, Hash: SHA256, Group: 19, Auth: AuthPSK} }

// memberAddr is the address of simulated member i (127.64.0.1 and up, as
// the load generator's).
func memberAddr(i int) netip.AddrPort {
	i++
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 64 + byte(i>>16), byte(i >> 8), byte(i)}), 848)
}

// establishedHeap establishes n responder SAs, each with a member of its
// own address and identity, on one responder endpoint in memory, runs the
// timers past the retransmission window, and returns the live heap the
// responder holds per SA (HeapAlloc after a GC, less the heap before the
// endpoint existed). The responder logs through a text handler at level
// Info, as isakmpd does.
func establishedHeap(tb testing.TB, n int) float64 {
	tb.Helper()
	cfgR := &Config{Suites: []Suite{ksSuite()}, Creds: Credentials{PSK: pskFor("k")},
		Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	cfgI := &Config{Suites: []Suite{ksSuite()}, Creds: Credentials{PSK: pskFor("k")}, DOI: isakmp.DOIGDOI}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	er, err := NewEndpoint(cfgR, addrR, Limits{})
	if err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		ei, err := NewEndpoint(cfgI, memberAddr(i), Limits{})
		if err != nil {
			tb.Fatal(err)
		}
		_, out, err := ei.Initiate(addrR, t0)
		if err != nil {
			tb.Fatal(err)
		}
		Exchange(ei, er, ei, out, t0)
	}
	if got := len(er.SAs()); got != n {
		tb.Fatalf("%d SAs established, want %d", got, n)
	}
	// Past every retransmission window, well within the lifetime.
	er.Tick(t0.Add(10 * time.Minute))
	if got := len(er.SAs()); got != n {
		tb.Fatalf("%d SAs left after the timers, want %d", got, n)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(er)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}

// BenchmarkEstablishedSAMemory reports the live heap a responder holds per
// established phase-1 SA with 10,000 of them (issue 18 F3).
func BenchmarkEstablishedSAMemory(b *testing.B) {
	for b.Loop() {
		b.ReportMetric(establishedHeap(b, 10000), "B/SA")
	}
}

// maxEstablishedSAHeap bounds the live heap per established responder SA:
// 721 bytes measured with 2,000 SAs (3,022 before issue 18 F3: the DH key
// pair, KE data, nonces, SAi_b, hashes, message 6, a logger with
// attributes and an empty map kept per SA, SKEYID, the IV and a Keys of
// slices, a map per identity in the index).
const maxEstablishedSAHeap = 800

// proves: N1 (issue 18 F3: an established phase-1 SA keeps only what later
// exchanges need: at most maxEstablishedSAHeap bytes of live heap each on
// a key server, 3,000 before)
func TestEstablishedSAMemory(t *testing.T) {
	got := establishedHeap(t, 2000)
	t.Logf("%.0f bytes of live heap per established responder SA", got)
	if got > maxEstablishedSAHeap {
		t.Fatalf("%.0f bytes of live heap per established SA, want at most %d", got, maxEstablishedSAHeap)
	}
}

// proves: S2 (issue 18 F3: what an established SA releases is what no
// later exchange needs: after main mode, message 6's window and its
// release, GROUPKEY-PULL-style phase-2 messages both ways, DPD, a
// notification and Delete still work, and the handshake's secrets are
// gone)
func TestEstablishedSAReleasesHandshake(t *testing.T) {
	cfgI, cfgR := pskConfig(), pskConfig()
	ei, er, si, sr := dpdPair(t, cfgI, cfgR)
	if si.hs != nil {
		t.Fatal("the initiator kept main mode's state after message 6")
	}
	if sr.hs == nil || sr.hs.sent == nil || sr.hs.dh != nil || sr.hs.gxi != nil || sr.hs.ni != nil || sr.hs.saiBody != nil || sr.hs.hashes != nil {
		t.Fatalf("the responder's state in message 6's window: %+v", sr.hs)
	}
	if sr.phase2IVs != nil || si.phase2IVs != nil {
		t.Fatal("an IV map before any phase-2 exchange")
	}
	now := t0.Add(time.Second)
	for mid := uint32(7); mid < 9; mid++ {
		msg, err := si.EncryptPhase2(isakmp.ExchangePull, mid, []isakmp.Payload{&isakmp.Hash{Data: []byte{byte(mid)}}, &isakmp.Nonce{Data: make([]byte, 16)}})
		if err != nil {
			t.Fatal(err)
		}
		m, _ := isakmp.ParseMessage(msg)
		// An authenticated message (the check is GROUPKEY-PULL's HASH)
		// proves the peer got message 6: the window ends.
		if _, err := sr.OpenPhase2(m, func([]isakmp.Payload) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if sr.hs != nil {
			t.Fatal("the responder kept message 6 after an authenticated phase-2 message")
		}
		back, _ := sr.EncryptPhase2(isakmp.ExchangePull, mid, []isakmp.Payload{&isakmp.SEQ{Number: mid}})
		m, _ = isakmp.ParseMessage(back)
		if ps, err := si.OpenPhase2(m, nil); err != nil || ps[0].(*isakmp.SEQ).Number != mid {
			t.Fatalf("reply mid %d: %v", mid, err)
		}
		si.ForgetMessageID(mid)
		sr.ForgetMessageID(mid)
	}
	if sr.phase2IVs != nil || si.phase2IVs != nil {
		t.Fatal("the IV map stayed after its last exchange was forgotten")
	}
	r, err := si.DPD(now)
	if err != nil {
		t.Fatal(err)
	}
	if ack := er.Handle(addrI, r.Send[0], now); len(ack.Send) != 1 {
		t.Fatalf("R-U-THERE not acknowledged: %+v", ack)
	}
	n, err := sr.Notify(isakmp.NotifyType(16384), nil)
	if err != nil {
		t.Fatal(err)
	}
	if o := ei.Handle(addrR, n, now); len(o.Events) != 1 {
		t.Fatalf("notification: %+v", o)
	}
	del, err := ei.Delete(si, now)
	if err != nil {
		t.Fatal(err)
	}
	if o := er.Handle(addrI, del.Send[0].Data, now); len(o.Events) != 1 || len(er.SAs()) != 0 {
		t.Fatalf("delete: %+v", o)
	}
	if sr.Keys() == nil || sr.Info().PeerID == nil || sr.Info().Expires.IsZero() {
		t.Fatalf("the SA's description was lost: %+v", sr.Info())
	}
}

// proves: groundwork (retransmission; issue 18 F3) — a responder answers a
// repeated message 5 with message 6 during the window in which a peer
// retransmits (our own schedule's span), then forgets message 6: a late
// repeat is dropped and counted, the SA stays.
func TestMessage6Window(t *testing.T) {
	cfg := pskConfig()
	ei, err := NewEndpoint(cfg, addrI, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	er, _ := NewEndpoint(cfg, addrR, Limits{})
	_, out, _ := ei.Initiate(addrR, t0)
	var mm5, mm6 []byte
	for n := 1; len(out.Send) == 1; n += 2 {
		if n == 5 {
			mm5 = out.Send[0].Data
		}
		o := er.Handle(addrI, out.Send[0].Data, t0)
		if n == 5 {
			mm6 = o.Send[0].Data
			break
		}
		out = ei.Handle(addrR, o.Send[0].Data, t0)
	}
	sr := er.SAs()[0]
	window := DefaultRetransmit.span()
	if window != 46*time.Second {
		t.Fatalf("window %v, want 46 s (2+4+8+16+16)", window)
	}
	if got := er.NextTimer(); !got.Equal(t0.Add(window)) {
		t.Fatalf("responder's timer at +%v, want the window's end +%v", got.Sub(t0), window)
	}
	o := er.Handle(addrI, mm5, t0.Add(window-time.Second))
	if len(o.Send) != 1 || !bytes.Equal(o.Send[0].Data, mm6) {
		t.Fatalf("repeat of message 5 in the window answered with %d datagrams", len(o.Send))
	}
	er.Tick(t0.Add(window))
	if sr.hs != nil {
		t.Fatal("message 6 kept after the window")
	}
	if got := er.NextTimer(); !got.Equal(sr.Info().Expires) {
		t.Fatalf("responder's timer at +%v after the window, want the expiry", got.Sub(t0))
	}
	dropped := er.Stats.Dropped
	if o := er.Handle(addrI, mm5, t0.Add(window+time.Second)); len(o.Send) != 0 || er.Stats.Dropped != dropped+1 {
		t.Fatalf("late repeat of message 5: %d datagrams, dropped %d", len(o.Send), er.Stats.Dropped-dropped)
	}
	if sr.State() != StateEstablished || len(er.SAs()) != 1 {
		t.Fatal("the late repeat disturbed the SA")
	}
	// Then the initiator gets message 6 and both hold the SA.
	if ei.Handle(addrR, mm6, t0); len(ei.SAs()) != 1 {
		t.Fatal("initiator not established")
	}
}

// proves: groundwork (known answers; issue 18 F3) — Config.KeepTranscript
// keeps main mode's public values after establishment (the interop tests
// record charon's vectors from them); without it they are dropped.
func TestKeepTranscript(t *testing.T) {
	keep := pskConfig()
	keep.KeepTranscript = true
	_, _, si, sr := dpdPair(t, keep, keep)
	for _, sa := range []*SA{si, sr} {
		tr := sa.Transcript()
		if len(tr.Ni) == 0 || len(tr.Nr) == 0 || len(tr.GXI) == 0 || len(tr.GXR) == 0 || len(tr.SAi) == 0 ||
			len(tr.HashI) == 0 || len(tr.HashR) == 0 || len(tr.IDi) == 0 || len(tr.IDr) == 0 {
			t.Fatalf("transcript kept: %+v", tr)
		}
		if sa.hs.dh != nil {
			t.Fatal("the DH private key was kept")
		}
		if k := sa.Keys(); len(k.SKEYID) == 0 || len(k.IV) != 16 || len(k.SKEYIDd) == 0 || len(k.Ka) == 0 {
			t.Fatalf("keys kept: %+v", k)
		}
	}
	kept := si.Keys()
	_, _, si, sr = dpdPair(t, pskConfig(), pskConfig())
	for _, sa := range []*SA{si, sr} {
		if tr := sa.Transcript(); tr.Ni != nil || tr.GXI != nil || tr.HashI != nil || len(tr.IDi) == 0 {
			t.Fatalf("transcript without KeepTranscript: %+v", tr)
		}
		// What later exchanges need stays: SKEYID_d/a/e and Ka.
		k := sa.Keys()
		if k.SKEYID != nil || k.IV != nil || len(k.SKEYIDd) != len(kept.SKEYIDd) || len(k.SKEYIDa) != len(kept.SKEYIDa) ||
			len(k.SKEYIDe) != len(kept.SKEYIDe) || len(k.Ka) != len(kept.Ka) {
			t.Fatalf("keys without KeepTranscript: %+v", k)
		}
	}
	if !bytes.Equal(si.Keys().SKEYIDa, sr.Keys().SKEYIDa) || !bytes.Equal(si.Keys().Ka, sr.Keys().Ka) {
		t.Fatal("the two sides hold different keys")
	}
}

// proves: groundwork (key derivation; issue 18 F3) — the compact key
// material an SA keeps gives the values DeriveKeys computes, for every
// hash and key length, Ka extended (RFC 2409 Appendix B) included.
func TestKeyMaterial(t *testing.T) {
	for _, h := range []HashAlg{SHA1, SHA256, SHA384, SHA512} {
		for _, bits := range []int{128, 192, 256} {
			s := Suite{KeyBits: bits, Hash: h, Group: 19, Auth: AuthPSK}
			var mk mainKeys
			km, err := deriveKeys(new(scratch), s, []byte("k"), []byte("ni"), []byte("nr"), []byte("gxy"), []byte("gxi"), []byte("gxr"), []byte{1, 0, 0, 0, 0, 0, 0, 0}, []byte{2, 0, 0, 0, 0, 0, 0, 0}, &mk)
			if err != nil {
				t.Fatal(err)
			}
			k := mk.keys(s, km)
			want, _ := DeriveKeys(s, []byte("k"), []byte("ni"), []byte("nr"), []byte("gxy"), []byte("gxi"), []byte("gxr"), [8]byte{1}, [8]byte{2})
			if !bytes.Equal(km.skeyidD(h), want.SKEYIDd) || !bytes.Equal(km.skeyidA(h), want.SKEYIDa) ||
				!bytes.Equal(km.skeyidE(h), want.SKEYIDe) || !bytes.Equal(km.ka(s), want.Ka) || len(km.ka(s)) != bits/8 ||
				!bytes.Equal(k.Ka, want.Ka) || !bytes.Equal(k.SKEYID, want.SKEYID) || !bytes.Equal(k.IV, want.IV) {
				t.Fatalf("%s: key material differs from DeriveKeys", s)
			}
		}
	}
}

// proves: N1 (issue 18 F3: a GROUPKEY-PULL the key server remembers after
// it answered costs its SA no more than 32 octets of heap: the IV chain of
// one exchange lies in the SA; a map of chains cost 351)
func TestPhase2ExchangeMemory(t *testing.T) {
	const n = 2000
	cfg := pskConfig()
	er, _ := NewEndpoint(cfg, addrR, Limits{})
	var msgs [][]byte
	for i := range n {
		ei, _ := NewEndpoint(cfg, memberAddr(i), Limits{})
		_, out, _ := ei.Initiate(addrR, t0)
		Exchange(ei, er, ei, out, t0)
		m, err := ei.SAs()[0].EncryptPhase2(isakmp.ExchangePull, 77, []isakmp.Payload{&isakmp.Hash{Data: make([]byte, 32)}, &isakmp.Nonce{Data: make([]byte, 16)}})
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	er.Tick(t0.Add(10 * time.Minute)) // message 6's windows are over
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, raw := range msgs {
		m, _ := isakmp.ParseMessage(raw)
		sr := er.Lookup(m.Header.InitiatorCookie, m.Header.ResponderCookie)
		if _, err := sr.OpenPhase2(m, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := sr.EncryptPhase2(isakmp.ExchangePull, 77, []isakmp.Payload{&isakmp.SEQ{Number: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(msgs)
	runtime.KeepAlive(er)
	per := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
	t.Logf("%.0f bytes per SA with one exchange remembered", per)
	if per > 32 {
		t.Fatalf("%.0f bytes per SA with one exchange remembered, want at most 32", per)
	}
}

// proves: groundwork (phase-2 IVs; issue 18 F3) — exchanges in progress at
// once, interleaved and forgotten in any order, each keep their own IV
// chain, whether in the SA's slot or the map, both ways.
func TestPhase2IVChainsInterleaved(t *testing.T) {
	_, _, si, sr := dpdPair(t, pskConfig(), pskConfig())
	mids := []uint32{11, 22, 33}
	round := func(mid uint32, n byte) {
		t.Helper()
		msg, err := si.EncryptPhase2(isakmp.ExchangePull, mid, []isakmp.Payload{&isakmp.Nonce{Data: bytes.Repeat([]byte{n}, 16)}})
		if err != nil {
			t.Fatal(err)
		}
		m, _ := isakmp.ParseMessage(msg)
		ps, err := sr.OpenPhase2(m, nil)
		if err != nil || !bytes.Equal(ps[0].(*isakmp.Nonce).Data, bytes.Repeat([]byte{n}, 16)) {
			t.Fatalf("mid %d round %d: %v %v", mid, n, ps, err)
		}
		back, _ := sr.EncryptPhase2(isakmp.ExchangePull, mid, []isakmp.Payload{&isakmp.SEQ{Number: mid + uint32(n)}})
		m, _ = isakmp.ParseMessage(back)
		if ps, err := si.OpenPhase2(m, nil); err != nil || ps[0].(*isakmp.SEQ).Number != mid+uint32(n) {
			t.Fatalf("reply mid %d round %d: %v", mid, n, err)
		}
	}
	for n := byte(1); n <= 3; n++ {
		for _, mid := range mids {
			round(mid, n)
		}
	}
	if sr.p2mid != 11 || len(sr.phase2IVs) != 2 {
		t.Fatalf("slot holds %d, map %d chains", sr.p2mid, len(sr.phase2IVs))
	}
	// The slot's exchange ends first: the others go on from the map, and a
	// new exchange takes the slot.
	si.ForgetMessageID(11)
	sr.ForgetMessageID(11)
	for n := byte(4); n <= 5; n++ {
		for _, mid := range []uint32{22, 44, 33} {
			round(mid, n)
		}
	}
	if sr.p2mid != 44 || len(sr.phase2IVs) != 2 {
		t.Fatalf("slot holds %d, map %d chains", sr.p2mid, len(sr.phase2IVs))
	}
	for _, mid := range []uint32{22, 33, 44} {
		si.ForgetMessageID(mid)
		sr.ForgetMessageID(mid)
	}
	if sr.p2mid != 0 || sr.phase2IVs != nil || si.p2mid != 0 || si.phase2IVs != nil {
		t.Fatal("chains left after every exchange was forgotten")
	}
	round(55, 6) // from phase 1's last block again
}

// proves: N1 (issue 18 F3: an established SA's traffic does not grow the
// endpoint's timer heap: a timer set again for the same instant keeps its
// entry; before, every message pushed another, stale until compaction)
func TestTimerHeapSteadyUnderTraffic(t *testing.T) {
	ei, er, si, sr := dpdPair(t, pskConfig(), pskConfig())
	er.Tick(t0.Add(10 * time.Minute)) // message 6's window is over
	before := len(er.timers)
	for mid := uint32(1); mid <= 200; mid++ {
		r, err := si.DPD(t0.Add(10 * time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if o := er.Handle(addrI, r.Send[0], t0.Add(10*time.Minute)); len(o.Send) != 1 {
			t.Fatalf("R-U-THERE %d unanswered", mid)
		}
		msg, _ := si.EncryptPhase2(isakmp.ExchangePull, mid, []isakmp.Payload{&isakmp.Nonce{Data: make([]byte, 16)}})
		if o := er.Handle(addrI, msg, t0.Add(10*time.Minute)); len(o.Events) != 1 {
			t.Fatalf("phase-2 message %d: %+v", mid, o)
		}
	}
	if len(er.timers) != before || before > 2 {
		t.Fatalf("timer heap: %d entries before 400 messages, %d after", before, len(er.timers))
	}
	if got := er.NextTimer(); !got.Equal(sr.Info().Expires) {
		t.Fatalf("responder's timer at %v, want the expiry", got.Sub(t0))
	}
	// The timer still fires: the SA expires.
	er.Tick(sr.Info().Expires)
	if len(er.SAs()) != 0 || len(ei.SAs()) != 1 {
		t.Fatal("the responder's SA did not expire")
	}
}

// proves: issue 18 (the KS's CPU per registration outside the crypto) — a
// phase-2 message decrypted and accepted leaves its AES block on the SA for
// the answer, which uses it and drops it: one key expansion per message
// pair, none kept between messages (a responder's: an initiator keeps one
// through its exchange, TestInitiatorExpandsThePhase2KeyOnce), none kept
// after a message that was not accepted; the answer still decrypts at the
// peer.
func TestPhase2BlockKeptForTheAnswerOnly(t *testing.T) {
	cfg := pskConfig()
	er, _ := NewEndpoint(cfg, addrR, Limits{})
	ei, _ := NewEndpoint(cfg, memberAddr(1), Limits{})
	_, out, _ := ei.Initiate(addrR, t0)
	Exchange(ei, er, ei, out, t0)
	si := ei.SAs()[0]
	ask := func() *isakmp.Message {
		raw, err := si.EncryptPhase2(isakmp.ExchangePull, 77, []isakmp.Payload{&isakmp.Hash{Data: make([]byte, 32)}, &isakmp.Nonce{Data: make([]byte, 16)}})
		if err != nil {
			t.Fatal(err)
		}
		m, err := isakmp.ParseMessage(raw)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := ask()
	sr := er.Lookup(m.Header.InitiatorCookie, m.Header.ResponderCookie)
	if si.p2block == nil {
		t.Fatal("the initiator dropped its block within its exchange")
	}
	// A message its check refuses (a forgery): no block stays.
	if _, err := sr.OpenPhase2(m, func([]isakmp.Payload) error { return errors.New("forged") }); err == nil || sr.p2block != nil {
		t.Fatalf("refused message: err %v, block kept %v", err, sr.p2block != nil)
	}
	if _, err := sr.OpenPhase2(m, nil); err != nil || sr.p2block == nil {
		t.Fatalf("accepted message: err %v, block kept %v", err, sr.p2block != nil)
	}
	answer, err := sr.EncryptPhase2(isakmp.ExchangePull, 77, []isakmp.Payload{&isakmp.SEQ{Number: 9}})
	if err != nil || sr.p2block != nil {
		t.Fatalf("answer: err %v, block kept %v", err, sr.p2block != nil)
	}
	am, err := isakmp.ParseMessage(answer)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := si.OpenPhase2(am, nil)
	if err != nil || len(ps) != 1 {
		t.Fatalf("the peer opens the answer: %v, %d payloads", err, len(ps))
	}
	if seq, ok := ps[0].(*isakmp.SEQ); !ok || seq.Number != 9 {
		t.Fatalf("the peer read %#v", ps[0])
	}
	si.ForgetMessageID(77)
	if si.p2block != nil {
		t.Fatal("block kept after the exchange was forgotten")
	}
}

// proves: issue 18 (the KS's CPU per registration outside the crypto) — a
// responder's first phase-2 message within message 6's window is
// decrypted with main mode's AES block (one key expansion for messages 5
// and 6 and the first pull's two), which leaves main mode's state with
// it; an initiator keeps main mode's block once established, not its
// state (TestInitiatorExpandsThePhase2KeyOnce).
func TestFirstPhase2MessageUsesMainModeBlock(t *testing.T) {
	cfg := pskConfig()
	er, _ := NewEndpoint(cfg, addrR, Limits{})
	ei, _ := NewEndpoint(cfg, memberAddr(2), Limits{})
	_, out, _ := ei.Initiate(addrR, t0)
	Exchange(ei, er, ei, out, t0)
	si := ei.SAs()[0]
	if si.hs != nil || si.p2block == nil {
		t.Fatal("the initiator kept main mode's state, or not its block, once established")
	}
	raw, err := si.EncryptPhase2(isakmp.ExchangePull, 5, []isakmp.Payload{&isakmp.Hash{Data: make([]byte, 32)}, &isakmp.Nonce{Data: make([]byte, 16)}})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := isakmp.ParseMessage(raw)
	sr := er.Lookup(m.Header.InitiatorCookie, m.Header.ResponderCookie)
	if sr.hs == nil || sr.hs.block == nil {
		t.Fatal("the responder has no main-mode block in message 6's window")
	}
	mm := sr.hs.block
	if _, err := sr.OpenPhase2(m, nil); err != nil {
		t.Fatal(err)
	}
	if sr.p2block != mm || (sr.hs != nil && sr.hs.block != nil) {
		t.Fatal("the first phase-2 message did not take main mode's block")
	}
	if _, err := sr.EncryptPhase2(isakmp.ExchangePull, 5, []isakmp.Payload{&isakmp.SEQ{Number: 1}}); err != nil || sr.p2block != nil {
		t.Fatalf("answer: %v, block kept %v", err, sr.p2block != nil)
	}
}

// proves: issue 18 (the load generator's CPU per registration) — an
// initiator (a GM) expands the phase-2 key once for main mode's messages
// 5 and 6 and a whole exchange after it: main mode's block serves the
// exchange's messages, sent and received, forged or not, until the
// exchange is forgotten; the exchange after it makes one block of its
// own. Without: four key expansions per GM registration.
func TestInitiatorExpandsThePhase2KeyOnce(t *testing.T) {
	cfg := pskConfig()
	er, _ := NewEndpoint(cfg, addrR, Limits{})
	ei, _ := NewEndpoint(cfg, memberAddr(3), Limits{})
	_, out, _ := ei.Initiate(addrR, t0)
	Exchange(ei, er, ei, out, t0)
	si := ei.SAs()[0]
	mm := si.p2block
	if mm == nil {
		t.Fatal("no block once established")
	}
	exchange := func(mid uint32) {
		t.Helper()
		for i := range 2 {
			raw, err := si.EncryptPhase2(isakmp.ExchangePull, mid, []isakmp.Payload{&isakmp.Hash{Data: make([]byte, 32)}, &isakmp.Nonce{Data: make([]byte, 16)}})
			if err != nil {
				t.Fatal(err)
			}
			m, _ := isakmp.ParseMessage(raw)
			sr := er.Lookup(m.Header.InitiatorCookie, m.Header.ResponderCookie)
			if _, err := sr.OpenPhase2(m, nil); err != nil {
				t.Fatal(err)
			}
			answer, err := sr.EncryptPhase2(isakmp.ExchangePull, mid, []isakmp.Payload{&isakmp.SEQ{Number: uint32(i)}})
			if err != nil {
				t.Fatal(err)
			}
			am, _ := isakmp.ParseMessage(answer)
			if i == 0 {
				// A forgery refused first: the block stays all the same.
				forged, _ := isakmp.ParseMessage(answer)
				if _, err := si.OpenPhase2(forged, func([]isakmp.Payload) error { return errors.New("forged") }); err == nil {
					t.Fatal("forgery accepted")
				}
			}
			if ps, err := si.OpenPhase2(am, nil); err != nil || len(ps) != 1 {
				t.Fatalf("answer %d: %v", i, err)
			}
		}
	}
	exchange(77)
	if si.p2block != mm {
		t.Fatal("the exchange's messages expanded the key again")
	}
	si.ForgetMessageID(77)
	if si.p2block != nil {
		t.Fatal("block kept after the exchange was forgotten")
	}
	exchange(79)
	next := si.p2block
	if next == nil || next == mm {
		t.Fatal("the next exchange has no block of its own")
	}
	exchange(79)
	if si.p2block != next {
		t.Fatal("the next exchange expanded the key more than once")
	}
	si.ForgetMessageID(79)
	if si.p2block != nil {
		t.Fatal("block kept after the next exchange was forgotten")
	}
}

// proves: S3 (no key material kept past its need; review of 832cf27:
// MEDIUM) — an initiator's SA that dies with an exchange in progress
// (its pull abandoned: gm forgets the message ID; the SA deleted, or its
// Endpoint reset) keeps no AES key schedule, and a reset Endpoint's old
// SAs are dead, their timers stale.
func TestDeadInitiatorKeepsNoBlock(t *testing.T) {
	start := func() (*Endpoint, *SA) {
		t.Helper()
		er, _ := NewEndpoint(pskConfig(), addrR, Limits{})
		ei, _ := NewEndpoint(pskConfig(), memberAddr(5), Limits{})
		_, out, _ := ei.Initiate(addrR, t0)
		Exchange(ei, er, ei, out, t0)
		si := ei.SAs()[0]
		if _, err := si.EncryptPhase2(isakmp.ExchangePull, 99, []isakmp.Payload{&isakmp.Hash{Data: make([]byte, 32)}}); err != nil {
			t.Fatal(err)
		}
		if si.p2block == nil || si.p2mid != 99 {
			t.Fatal("no block kept through the exchange in progress")
		}
		return ei, si
	}
	_, si := start()
	si.ForgetMessageID(99) // an abandoned pull (gm.Member.dropPull)
	if si.p2block != nil || si.phase2IVs != nil {
		t.Fatal("the exchange forgotten, its SA still keeps a block or IV chain")
	}
	ei, si := start()
	if _, err := ei.Delete(si, t0); err != nil {
		t.Fatal(err)
	}
	if si.p2block != nil || si.state != StateDead {
		t.Fatalf("deleted with an exchange in progress: block kept %v, state %v", si.p2block != nil, si.state)
	}
	ei, si = start()
	gen := si.gen
	ei.Reset(netip.AddrPortFrom(memberAddr(6).Addr(), 500))
	if si.p2block != nil || si.state != StateDead || si.gen == gen || si.timerAt != 0 {
		t.Fatalf("after Reset: block kept %v, state %v, generation moved %v", si.p2block != nil, si.state, si.gen != gen)
	}
}
