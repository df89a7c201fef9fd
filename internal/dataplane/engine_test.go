package dataplane

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/isakmp"
)

var (
	sites = netip.MustParsePrefix("10.1.0.0/16")
	h1    = netip.MustParseAddr("10.1.1.2")
	h2    = netip.MustParseAddr("10.1.2.2")
	t0    = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

func tek(spi uint32, sid uint32, sendFrom time.Time) sadb.TEK {
	key := make([]byte, 20)
	key[0] = byte(spi)
	return sadb.TEK{Group: "g", SPI: spi, Protocol: isakmp.TEKProtoESP, Transform: uint8(isakmp.ESPAESGCM16),
		KeyBits: 128, EncKey: key, SenderIDs: []uint32{sid}, SIDBits: 8, Src: sites, Dst: sites,
		ReplayMethod: isakmp.ReplayCounter, ReplayWindow: 64,
		Installed: sendFrom, SendFrom: sendFrom, Expires: t0.Add(time.Hour)}
}

// udp builds an IPv4 UDP packet.
func udp(src, dst netip.Addr, dport uint16, payload string) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8] = 64
	p[9] = unix.IPPROTO_UDP
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

// engine builds an Engine over mem without sockets or TUN: the decisions
// of the hot path, tested without root.
func engine(t *testing.T, mem *sadb.Memory, now *time.Time) *Engine {
	t.Helper()
	e := &Engine{cfg: Config{Keys: mem}, now: func() time.Time { return *now }, sas: map[saKey]*sa{}}
	if err := e.Refresh(); err != nil {
		t.Fatal(err)
	}
	return e
}

// out runs one clear packet through the outbound decision: "esp" with the
// SPI, "clear" or "drop".
func out(e *Engine, pkt []byte) (string, []byte) {
	buf := make([]byte, headroom+len(pkt)+tailroom)
	copy(buf[headroom:], pkt)
	o, ok := e.encap(e.snap.Load(), e.now(), buf[:headroom], buf[headroom:headroom+len(pkt)])
	switch {
	case !ok:
		return "drop", nil
	case len(o) == len(pkt) && &o[0] == &buf[headroom]:
		return "clear", o // the packet itself
	default:
		return "esp", o
	}
}

func policy() []sadb.PolicyEntry {
	return []sadb.PolicyEntry{
		{Action: sadb.Bypass, IPProto: unix.IPPROTO_UDP, Src: sites, Dst: sites, DstPort: 9999},
		{Action: sadb.Protect, IPProto: unix.IPPROTO_UDP, Src: sites, Dst: sites},
	}
}

// Fail-close drops covered traffic while the group holds no TEK, deny
// entries still pass and traffic no entry selects passes; fail-open passes
// covered traffic in the clear; receive-only SAs send in the clear.
// proves: T3 (issue 12)
func TestOutboundGroupBehaviour(t *testing.T) {
	now := t0
	mem := sadb.NewMemory()
	mem.SetPolicy("g", policy())
	mem.SetFailMode("g", sadb.FailClose)
	e := engine(t, mem, &now)
	covered := udp(h1, h2, 5000, "covered")
	if got, _ := out(e, covered); got != "clear" {
		t.Fatalf("covered packet of a group not configured, before any TEK: %s", got)
	}
	e.cfg.Groups = []string{"g"} // configured: fail-close before registration
	e.Refresh()
	if got, _ := out(e, covered); got != "drop" {
		t.Fatalf("fail-close before any TEK: %s, want drop", got)
	}
	mem.InstallTEK(tek(0x100, 1, t0.Add(time.Minute))) // sends from t0+1m
	e.Refresh()
	if got, _ := out(e, covered); got != "drop" {
		t.Errorf("fail-close, TEK not yet sending: %s, want drop", got)
	}
	if got, _ := out(e, udp(h1, h2, 9999, "deny")); got != "clear" {
		t.Errorf("deny entry under fail-close: %s, want clear", got)
	}
	if got, _ := out(e, udp(h1, netip.MustParseAddr("192.0.2.1"), 5000, "x")); got != "clear" {
		t.Errorf("packet no entry selects: %s, want clear", got)
	}
	mem.SetFailMode("g", sadb.FailOpen)
	e.Refresh()
	if got, _ := out(e, covered); got != "clear" {
		t.Errorf("fail-open, TEK not yet sending: %s, want clear", got)
	}
	now = t0.Add(time.Minute)
	got, o := out(e, covered)
	if spi, _ := binary.BigEndian.Uint32(o[20:]), 0; got != "esp" || spi != 0x100 {
		t.Fatalf("TEK sending: %s SPI %#x", got, spi)
	}
	if [4]byte(o[12:16]) != h1.As4() || [4]byte(o[16:20]) != h2.As4() {
		t.Errorf("outer addresses %v -> %v are not the inner ones", o[12:16], o[16:20])
	}
	ro := tek(0x200, 1, t0)
	ro.ReceiveOnly = true
	mem.DeleteTEK("g", 0x100)
	mem.InstallTEK(ro)
	e.Refresh()
	if got, _ := out(e, covered); got != "clear" {
		t.Errorf("receive-only: %s, want clear", got)
	}
	st := e.Stats()
	if st.FailCloseDrops != 2 || st.FailOpenClear != 1 || st.ReceiveOnly != 1 || st.Bypass != 1 || st.NotGroup != 2 || st.Encaps != 1 {
		t.Errorf("counters %+v", st)
	}
}

// Receive-only turned on by a rekey: once the new receive-only TEK's ATD
// has come the GM sends in the clear, although the old TEK (not deactivated:
// a policy-replace rekey only shortens its lifetime) could still seal; before
// the ATD the old TEK seals. Turned off again by a rekey, the old
// receive-only TEK keeps the GM clear until the new TEK's ATD.
// proves: T3 (issue 12: receive-only enabled by a rekey applies on packets)
func TestReceiveOnlyByRekey(t *testing.T) {
	now := t0
	mem := sadb.NewMemory()
	mem.SetPolicy("g", policy())
	e := engine(t, mem, &now)
	e.cfg.Groups = []string{"g"}
	mem.InstallTEK(tek(0x100, 1, t0))
	ro := tek(0x200, 1, t0.Add(30*time.Second))
	ro.ReceiveOnly = true
	mem.InstallTEK(ro)
	e.Refresh()
	covered := udp(h1, h2, 5000, "covered")
	if got, o := out(e, covered); got != "esp" || binary.BigEndian.Uint32(o[20:]) != 0x100 {
		t.Fatalf("before the receive-only TEK's ATD: %s, want ESP with the old TEK", got)
	}
	now = t0.Add(30 * time.Second)
	if got, _ := out(e, covered); got != "clear" {
		t.Fatalf("after the receive-only TEK's ATD, the old TEK still valid: %s, want clear", got)
	}
	if st := e.Stats(); st.ReceiveOnly != 1 || st.Encaps != 1 {
		t.Errorf("counters %+v", st)
	}
	// And back: a new sending TEK from t0+60s; until then the receive-only one decides.
	mem.InstallTEK(tek(0x300, 1, t0.Add(60*time.Second)))
	e.Refresh()
	now = t0.Add(45 * time.Second)
	if got, _ := out(e, covered); got != "clear" {
		t.Errorf("receive-only turned off, before the new TEK's ATD: %s, want clear", got)
	}
	now = t0.Add(60 * time.Second)
	if got, o := out(e, covered); got != "esp" || binary.BigEndian.Uint32(o[20:]) != 0x300 {
		t.Errorf("receive-only turned off, after the new TEK's ATD: %s, want ESP with the new TEK", got)
	}
}

// After a rekey the new TEK seals from its SendFrom (ATD), the old one is
// accepted until its Deactivate (DTD) and refused after, counted as no SA;
// an SA kept across a refresh keeps its replay state.
// proves: T3 (issue 12)
func TestRekeyAndInbound(t *testing.T) {
	now := t0
	mem := sadb.NewMemory()
	mem.SetPolicy("g", policy())
	mem.SetFailMode("g", sadb.FailClose)
	mem.InstallTEK(tek(0x100, 1, t0))
	a := engine(t, mem, &now) // sender
	peerMem := sadb.NewMemory()
	peerMem.SetPolicy("g", policy())
	peerMem.InstallTEK(tek(0x100, 2, t0))
	b := engine(t, peerMem, &now) // receiver

	in := func(pkt []byte) bool {
		p := append([]byte(nil), pkt...)
		_, _, ok := b.decap(p)
		return ok
	}
	_, old := out(a, udp(h1, h2, 5000, "one"))
	old = append([]byte(nil), old...)
	if !in(old) {
		t.Fatalf("first packet refused: %+v", b.Stats())
	}
	// Rekey: the new TEK arrives now, sends from ATD = now+30s, and the
	// old one is deactivated at DTD = now+60s.
	next := tek(0x101, 1, t0.Add(30*time.Second))
	mem.InstallTEK(next)
	peerNext := tek(0x101, 2, t0.Add(30*time.Second))
	peerMem.InstallTEK(peerNext)
	oldPeer := tek(0x100, 2, t0)
	oldPeer.Deactivate = t0.Add(60 * time.Second)
	peerMem.InstallTEK(oldPeer)
	a.Refresh()
	b.Refresh()
	if in(old) {
		t.Errorf("a packet replayed across a refresh was accepted")
	}
	if _, o := out(a, udp(h1, h2, 5000, "two")); binary.BigEndian.Uint32(o[20:]) != 0x100 {
		t.Errorf("before ATD sealed with %#x, want the old TEK", binary.BigEndian.Uint32(o[20:]))
	}
	_, late := out(a, udp(h1, h2, 5000, "late"))
	late = append([]byte(nil), late...)
	now = t0.Add(30 * time.Second)
	_, o := out(a, udp(h1, h2, 5000, "three"))
	if binary.BigEndian.Uint32(o[20:]) != 0x101 {
		t.Errorf("after ATD sealed with %#x, want the new TEK", binary.BigEndian.Uint32(o[20:]))
	}
	if !in(o) {
		t.Errorf("new TEK's packet refused: %+v", b.Stats())
	}
	now = t0.Add(61 * time.Second)
	if in(late) {
		t.Errorf("old TEK's packet accepted after DTD")
	}
	// Policy: an authentic packet that no permit entry selects (the deny
	// port) is dropped.
	_, mis := out(a, udp(h1, h2, 5000, "x"))
	mis = append([]byte(nil), mis...)
	if !in(mis) {
		t.Fatalf("control packet refused: %+v", b.Stats())
	}
	peerMem.SetPolicy("g", []sadb.PolicyEntry{{Action: sadb.Protect, IPProto: unix.IPPROTO_TCP, Src: sites, Dst: sites}})
	b.Refresh()
	_, mis = out(a, udp(h1, h2, 5000, "y"))
	if in(mis) {
		t.Errorf("a packet outside the SA's policy was delivered")
	}
	st := b.Stats()
	if st.Replay != 1 || st.NoSA != 1 || st.PolicyMismatch != 1 || st.Decaps != 3 {
		t.Errorf("receiver counters %+v", st)
	}
}

// Among TEKs that may all send (a registration installs every TEK it
// brings with the same sending start), the engine seals with the newest,
// the one that ends last, whatever the SPIs' order; before, it took the
// lowest SPI and could send with the oldest TEK until its very end, which
// other members, told by a rekey's deactivation delay, may have reached
// first.
// proves: T1, T3
func TestEqualSendingStartsSealWithTheNewest(t *testing.T) {
	now := t0
	for _, spis := range [][2]uint32{{0x100, 0x200}, {0x200, 0x100}} {
		mem := sadb.NewMemory()
		mem.SetPolicy("g", policy())
		old, young := tek(spis[0], 1, t0), tek(spis[1], 1, t0)
		old.Expires = t0.Add(6 * time.Second)
		mem.InstallTEK(old)
		mem.InstallTEK(young)
		e := engine(t, mem, &now)
		if _, o := out(e, udp(h1, h2, 5000, "x")); binary.BigEndian.Uint32(o[20:]) != young.SPI {
			t.Errorf("old TEK %#x ends in 6 s, new %#x in an hour: sealed with %#x", old.SPI, young.SPI, binary.BigEndian.Uint32(o[20:]))
		}
	}
}

// pair is a sending and a receiving engine over the same group TEK.
func pair(t testing.TB) (a, b *Engine) {
	now := t0
	mk := func(sid uint32) *Engine {
		mem := sadb.NewMemory()
		mem.SetPolicy("g", policy())
		mem.InstallTEK(tek(0x100, sid, t0))
		e := &Engine{cfg: Config{Keys: mem}, now: func() time.Time { return now }, sas: map[saKey]*sa{}}
		if err := e.Refresh(); err != nil {
			t.Fatal(err)
		}
		return e
	}
	return mk(1), mk(2)
}

// The hot path allocates nothing per packet: policy lookup, seal, open and
// the inner packet's policy check.
func TestHotPathNoAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	a, b := pair(t)
	inner := udp(h1, h2, 5000, string(make([]byte, 1000)))
	buf := make([]byte, headroom+len(inner)+tailroom)
	snap := a.snap.Load()
	var sealed []byte
	if n := testing.AllocsPerRun(200, func() {
		copy(buf[headroom:], inner)
		sealed, _ = a.encap(snap, t0, buf[:headroom], buf[headroom:headroom+len(inner)])
	}); n != 0 {
		t.Errorf("encap: %v allocations per packet", n)
	}
	work := make([]byte, 2048)
	if n := testing.AllocsPerRun(200, func() {
		copy(buf[headroom:], inner)
		p, _ := a.encap(snap, t0, buf[:headroom], buf[headroom:headroom+len(inner)])
		copy(work, p)
		if _, _, ok := b.decap(work[:len(p)]); !ok {
			t.Fatal("decap refused")
		}
	}); n != 0 {
		t.Errorf("encap+decap: %v allocations per packet", n)
	}
	_ = sealed
}

func BenchmarkEncapDecap(b *testing.B) {
	for _, size := range []int{64, 512, 1400} {
		b.Run(strconv.Itoa(size), func(bb *testing.B) {
			tx, rx := pair(bb)
			inner := udp(h1, h2, 5000, string(make([]byte, size-28)))
			buf := make([]byte, headroom+len(inner)+tailroom)
			work := make([]byte, len(buf))
			snap := tx.snap.Load()
			bb.SetBytes(int64(size))
			bb.ReportAllocs()
			for bb.Loop() {
				copy(buf[headroom:], inner)
				p, _ := tx.encap(snap, t0, buf[:headroom], buf[headroom:headroom+len(inner)])
				copy(work, p)
				if _, _, ok := rx.decap(work[:len(p)]); !ok {
					bb.Fatal("decap refused")
				}
			}
		})
	}
}

// Any bytes from the TUN device or the network: no panic, and what the
// engine sends is the packet itself or an ESP packet that opens to it.
func FuzzEngine(f *testing.F) {
	f.Add(udp(h1, h2, 5000, "covered"), false)
	f.Add(udp(h1, h2, 9999, "deny"), false)
	f.Add([]byte{0x45, 0, 0, 20}, true)
	a, _ := pair(f)
	seed, _ := out(a, udp(h1, h2, 5000, "sealed"))
	f.Add(append([]byte(nil), seed...), true)
	f.Fuzz(func(t *testing.T, pkt []byte, inbound bool) {
		a, b := pair(t)
		if inbound {
			b.decap(append([]byte(nil), pkt...))
			return
		}
		got, o := out(a, pkt)
		switch got {
		case "clear":
			if string(o) != string(pkt) {
				t.Fatalf("clear packet changed")
			}
		case "esp":
			inner, _, ok := b.decap(append([]byte(nil), o...))
			if !ok || string(inner) != string(pkt[:len(inner)]) {
				t.Fatalf("sealed packet does not open to the original: %+v", b.Stats())
			}
		}
	})
}

// A group whose SA database keeps no policy protects what its TEKs'
// selectors cover, rather than sending everything in the clear.
func TestPolicyFromSelectors(t *testing.T) {
	now := t0
	mem := sadb.NewMemory()
	mem.InstallTEK(tek(0x100, 1, t0))
	e := engine(t, mem, &now)
	if got, _ := out(e, udp(h1, h2, 5000, "covered")); got != "esp" {
		t.Errorf("packet the TEK's selector covers: %s, want esp", got)
	}
	if got, _ := out(e, udp(h1, netip.MustParseAddr("192.0.2.1"), 5000, "x")); got != "clear" {
		t.Errorf("packet outside the selector: %s, want clear", got)
	}
}

// NewUnplugged and Decide export the hot path's decisions to the external
// tests (which may import packages that import this one).
func NewUnplugged(keys Keys, groups []string, now func() time.Time) (*Engine, error) {
	e := &Engine{cfg: Config{Keys: keys, Groups: groups}, now: now, sas: map[saKey]*sa{}}
	return e, e.Refresh()
}

// Decide is "esp", "clear" or "drop" for one clear packet.
func (e *Engine) Decide(pkt []byte) string {
	got, _ := out(e, pkt)
	return got
}

// UDP builds an IPv4 UDP packet between the test sites.
func UDP(dport uint16, payload string) []byte { return udp(h1, h2, dport, payload) }

// GroupTEK is the tests' GCM TEK.
func GroupTEK(spi, sid uint32, sendFrom time.Time) sadb.TEK { return tek(spi, sid, sendFrom) }

// GroupPolicy is the tests' group policy.
func GroupPolicy() []sadb.PolicyEntry { return policy() }

// A policy replace that widens the ACL: the new TEK's selector is the new
// entry's, and it may send only from its activation time. Until then the
// old TEK, whose own selector covers the packet, keeps sealing it (the GM
// keeps using the old SAs, SPEC P3), rather than the packet being dropped
// (fail-close) or sent in the clear (fail-open); traffic only the new ACL
// covers waits for the new TEK. Without older[] every covered packet was
// lost for the activation delay (issue 13's bench found it).
// proves: P3, E2 (issue 13: a widened ACL loses nothing before the new TEK sends)
func TestPolicyReplaceWidenedACLKeepsOldSA(t *testing.T) {
	now := t0
	mem := sadb.NewMemory()
	mem.SetPolicy("g", policy())
	mem.SetFailMode("g", sadb.FailClose)
	mem.InstallTEK(tek(0x100, 1, t0))
	e := engine(t, mem, &now)
	covered := udp(h1, h2, 5000, "covered")
	wide := netip.MustParsePrefix("10.0.0.0/8")
	onlyNew := udp(h1, netip.MustParseAddr("10.2.1.2"), 5000, "new")
	if got, _ := out(e, covered); got != "esp" {
		t.Fatalf("before the replace: %s", got)
	}
	// The replace: the widened entry, and its TEK sending 30 s later.
	mem.SetPolicy("g", []sadb.PolicyEntry{{Action: sadb.Protect, IPProto: unix.IPPROTO_UDP, Src: wide, Dst: wide}})
	next := tek(0x101, 1, t0.Add(30*time.Second))
	next.Src, next.Dst, next.IPProto = wide, wide, unix.IPPROTO_UDP
	mem.InstallTEK(next)
	e.Refresh()
	got, o := out(e, covered)
	if got != "esp" || binary.BigEndian.Uint32(o[20:]) != 0x100 {
		t.Fatalf("after the replace, before ATD: %s, want the old TEK", got)
	}
	if got, _ := out(e, onlyNew); got != "drop" {
		t.Errorf("traffic only the new ACL covers, before ATD: %s, want drop (fail-close)", got)
	}
	now = t0.Add(30 * time.Second)
	for _, p := range [][]byte{covered, onlyNew} {
		got, o := out(e, p)
		if got != "esp" || binary.BigEndian.Uint32(o[20:]) != 0x101 {
			t.Errorf("after ATD: %s, want the new TEK", got)
		}
	}
	// The old TEK expired: nothing falls back on it.
	now = t0.Add(2 * time.Hour)
	if got, _ := out(e, covered); got != "drop" {
		t.Errorf("after every TEK expired: %s, want drop", got)
	}
	if st := e.Stats(); st.Encaps != 4 || st.FailCloseDrops != 2 {
		t.Errorf("counters %+v", st)
	}
}

// A counter-mode TEK without sender IDs (installed from a rekey before the
// GM registered for them) opens packets but never seals: the sender falls
// back on a TEK it can seal with, else on its fail mode, rather than
// counting every packet as a seal error.
// proves: E2 (issue 13: a GCM TEK without SIDs is receive-only until the GM re-registers)
func TestCounterModeTEKWithoutSIDsDoesNotSeal(t *testing.T) {
	now := t0
	mem := sadb.NewMemory()
	mem.SetPolicy("g", policy())
	mem.SetFailMode("g", sadb.FailClose)
	noSID := tek(0x101, 1, t0)
	noSID.SenderIDs, noSID.SIDBits = nil, 0
	mem.InstallTEK(noSID)
	e := engine(t, mem, &now)
	covered := udp(h1, h2, 5000, "covered")
	if got, _ := out(e, covered); got != "drop" {
		t.Fatalf("only a TEK without SIDs: %s, want drop (fail-close)", got)
	}
	mem.InstallTEK(tek(0x100, 1, t0.Add(-time.Minute))) // older, with a SID
	e.Refresh()
	if got, o := out(e, covered); got != "esp" || binary.BigEndian.Uint32(o[20:]) != 0x100 {
		t.Fatalf("with an older TEK that has a SID: %s", got)
	}
	// The peer's packet on the SID-less TEK opens.
	peer := sadb.NewMemory()
	peer.SetPolicy("g", policy())
	peer.InstallTEK(tek(0x101, 2, t0))
	p := engine(t, peer, &now)
	_, o := out(p, covered)
	if _, _, ok := e.decap(append([]byte(nil), o...)); !ok {
		t.Fatalf("a packet on the TEK without SIDs was refused: %+v", e.Stats())
	}
	if st := e.Stats(); st.SealErrors != 0 || st.FailCloseDrops != 1 {
		t.Errorf("counters %+v", st)
	}
}
