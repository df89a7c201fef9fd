package gm

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/isakmp"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func result(keyLen int, withSID bool) *gdoi.Result {
	sel := isakmp.Selector{Src: isakmp.PrefixEndpoint(netip.MustParsePrefix("10.0.0.0/8"), 0), Dst: isakmp.PrefixEndpoint(netip.MustParsePrefix("10.0.0.0/8"), 0)}
	kd := &isakmp.KD{Packets: []*isakmp.KeyPacket{{KDType: isakmp.KDTEK, SPI: []byte{0, 0, 1, 0},
		Attributes: isakmp.Attributes{isakmp.VarAttr(isakmp.TEKAlgorithmKey, bytes.Repeat([]byte{1}, keyLen))}}}}
	if withSID {
		kd.Packets = append(kd.Packets, &isakmp.KeyPacket{KDType: isakmp.KDSID, Attributes: isakmp.Attributes{
			isakmp.BasicAttr(isakmp.SIDNumberOfBits, 16), isakmp.VarAttr(isakmp.SIDValue, []byte{0, 0, 0, 9})}})
	}
	return &gdoi.Result{KD: kd, Policy: &isakmp.GroupSA{TEKs: []*isakmp.SAT{{Protocol: isakmp.TEKProtoESP, Selector: sel,
		TransformID: uint8(isakmp.ESPAESGCM16), SPI: 256, Attributes: isakmp.Attributes{
			isakmp.BasicAttr(isakmp.IPsecKeyLength, 256), isakmp.IntAttr(isakmp.IPsecSALifeDuration, 1800)}}}}}
}

// proves: groundwork — a GM installs only a complete, consistent policy:
// wrong key lengths or a counter-mode TEK without sender IDs are refused
// with a reason and nothing is installed.
func TestInstallChecksEverything(t *testing.T) {
	dp := sadb.NewMemory()
	inst, err := Install(dp, dp, "G", 1, result(36, true), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(dp.TEKs()) != 1 || inst.Earliest != now.Add(1800*time.Second) || dp.TEKs()[0].SenderIDs[0] != 9 {
		t.Fatalf("installed %+v", dp.TEKs())
	}
	for name, c := range map[string]struct {
		res  *gdoi.Result
		want string
	}{
		"short key": {result(20, true), "TEK_ALGORITHM_KEY missing or not 36 octets"},
		"no SID":    {result(36, false), "sent no sender ID"},
	} {
		dp := sadb.NewMemory()
		if _, err := Install(dp, dp, "G", 1, c.res, now); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", name, err)
		}
		if len(dp.TEKs()) != 0 {
			t.Errorf("%s: something was installed", name)
		}
	}
}

// proves: T4 — re-registration falls in a window before expiry that
// scales with the lifetime and is spread by the random input.
func TestReregisterWindow(t *testing.T) {
	exp := now.Add(time.Hour)
	early, late := ReregisterAt(exp, time.Hour, 0.999), ReregisterAt(exp, time.Hour, 0)
	if late != exp.Add(-3*time.Minute) || early.After(exp.Add(-5*time.Minute)) || !early.After(exp.Add(-6*time.Minute)) {
		t.Fatalf("window [%s, %s] before expiry", exp.Sub(early), exp.Sub(late))
	}
	if d := exp.Sub(ReregisterAt(exp, 2*time.Minute, 0)); d != 30*time.Second {
		t.Fatalf("short lifetimes get at least 30 s: %s", d)
	}
}

// installThenRekey registers (TEK 256) and applies, 10 minutes later, a
// rekey bringing TEK 512 of the same selector with a GAP of attrs. It
// returns the SA database, the first TEK and when the rekey was applied.
func installThenRekey(t *testing.T, attrs ...isakmp.Attribute) (*sadb.Memory, sadb.TEK, time.Time) {
	t.Helper()
	dp := sadb.NewMemory()
	if _, err := Install(dp, dp, "G", 1, result(36, true), now); err != nil {
		t.Fatal(err)
	}
	old := dp.TEKs()[0]
	r := result(36, false)
	r.Policy.TEKs[0].SPI = 512
	r.KD.Packets[0].SPI = []byte{0, 0, 2, 0}
	r.Policy.GAP = &isakmp.GAP{Attributes: attrs}
	at := now.Add(10 * time.Minute)
	if _, err := ApplyRekey(dp, dp, "G", 1, &gdoi.Rekey{Seq: 1, SA: r.Policy, KD: r.KD}, at); err != nil {
		t.Fatal(err)
	}
	return dp, old, at
}

// proves: T1 — a rekey's GAP ATD/DTD: the new TEK is accepted at once but
// sent with only ATD later; the TEK it replaces keeps decrypting until
// DTD (RFC 6407 §5.4.1, RFC 5374 §4.2.1).
func TestRekeyActivationDelays(t *testing.T) {
	dp, old, at := installThenRekey(t, isakmp.BasicAttr(isakmp.GAPActivationTimeDelay, 30),
		isakmp.BasicAttr(isakmp.GAPDeactivationTimeDelay, 90))
	teks := dp.TEKs()
	if len(teks) != 2 {
		t.Fatalf("%d TEKs", len(teks))
	}
	for _, tk := range teks {
		switch tk.SPI {
		case old.SPI:
			if !tk.Deactivate.Equal(at.Add(90 * time.Second)) {
				t.Fatalf("old TEK deactivates at %s", tk.Deactivate.Sub(at))
			}
		case 512:
			if !tk.SendFrom.Equal(at.Add(30*time.Second)) || len(tk.SenderIDs) != 1 {
				t.Fatalf("new TEK sends from +%s with SIDs %v", tk.SendFrom.Sub(at), tk.SenderIDs)
			}
		}
	}
}

// proves: P6, T1 — what a rekey's GAP does to the TEK the new one
// replaces (same selector). The deactivation delay the KS sends members
// before policy replace (65,535 s, ks.oldGAP) ends it no later than its
// own expiry: it runs out (SPEC P6). A GAP with the activation delay
// alone (another vendor's KS may send one) leaves it to run out too, as a
// rekey without a GAP does; before, it deactivated it at once, and
// nothing could send until the activation delay. A DTD of 0 ends it at
// once; a malformed DTD is ignored. The new TEK sends from the activation
// delay in every case.
func TestReplacedTEKDeactivationByGAP(t *testing.T) {
	atd := isakmp.BasicAttr(isakmp.GAPActivationTimeDelay, 30)
	dtd := func(v uint16) isakmp.Attribute { return isakmp.BasicAttr(isakmp.GAPDeactivationTimeDelay, v) }
	for _, c := range []struct {
		name  string
		attrs []isakmp.Attribute
		want  func(old sadb.TEK, at time.Time) time.Time // the old TEK's Deactivate
	}{
		{"ATD alone", []isakmp.Attribute{atd}, func(sadb.TEK, time.Time) time.Time { return time.Time{} }},
		{"DTD 65535 (members before policy replace)", []isakmp.Attribute{atd, dtd(65535)}, func(old sadb.TEK, _ time.Time) time.Time { return old.Expires }},
		{"DTD 0", []isakmp.Attribute{atd, dtd(0)}, func(_ sadb.TEK, at time.Time) time.Time { return at }},
		{"DTD malformed", []isakmp.Attribute{atd, isakmp.VarAttr(isakmp.GAPDeactivationTimeDelay, make([]byte, 9))},
			func(sadb.TEK, time.Time) time.Time { return time.Time{} }},
		// RFC 6407 §5.4: the delays are Basic (TV), 16 bits. An 8-octet
		// TLV of 2^63 s wrapped time.Duration around to 0: the old TEK
		// was deactivated at once. One that fits in 16 bits is taken.
		{"DTD 2^63 as a TLV", []isakmp.Attribute{atd, isakmp.VarAttr(isakmp.GAPDeactivationTimeDelay, []byte{0x80, 0, 0, 0, 0, 0, 0, 0})},
			func(sadb.TEK, time.Time) time.Time { return time.Time{} }},
		{"DTD 90 as a TLV", []isakmp.Attribute{atd, isakmp.VarAttr(isakmp.GAPDeactivationTimeDelay, []byte{0, 90})},
			func(_ sadb.TEK, at time.Time) time.Time { return at.Add(90 * time.Second) }},
	} {
		dp, old, at := installThenRekey(t, c.attrs...)
		seen := map[uint32]bool{}
		for _, tk := range dp.TEKs() {
			seen[tk.SPI] = true
			switch tk.SPI {
			case old.SPI:
				if want := c.want(old, at); !tk.Deactivate.Equal(want) || !tk.Expires.Equal(old.Expires) {
					t.Errorf("%s: old TEK deactivates at %s, expires at %s; want deactivation at %s", c.name, tk.Deactivate, tk.Expires, want)
				}
			case 512:
				if !tk.SendFrom.Equal(at.Add(30*time.Second)) || !tk.Deactivate.IsZero() {
					t.Errorf("%s: new TEK sends from +%s, deactivates at %s", c.name, tk.SendFrom.Sub(at), tk.Deactivate)
				}
			}
		}
		if len(seen) != 2 || !seen[old.SPI] || !seen[512] {
			t.Fatalf("%s: TEKs held %v, want the old and the new", c.name, seen)
		}
	}
}

// proves: T1 (a GAP's delays are 16-bit TV attributes, RFC 6407 §5.4) —
// an ACTIVATION_TIME_DELAY sent as a TLV is taken if its value fits in 16
// bits (30 s in 2 octets, or in 8) and ignored otherwise (the new TEK
// sends at once, as with no delay), not read as up to 2^64 seconds: 2^32
// s, which does not overflow time.Duration, kept the member from sending
// with the new TEK for 136 years.
func TestGAPDelayAsTLV(t *testing.T) {
	for _, c := range []struct {
		v     []byte
		delay time.Duration
	}{
		{[]byte{0, 0, 0, 1, 0, 0, 0, 0}, 0},
		{[]byte{0, 1, 0, 0}, 0}, // 65,536: one more than 16 bits hold
		{[]byte{0, 30}, 30 * time.Second},
		{[]byte{0, 0, 0, 0, 0, 0, 0, 30}, 30 * time.Second},
	} {
		dp, _, at := installThenRekey(t, isakmp.VarAttr(isakmp.GAPActivationTimeDelay, c.v))
		i := slices.IndexFunc(dp.TEKs(), func(tk sadb.TEK) bool { return tk.SPI == 512 })
		if i < 0 {
			t.Fatalf("ATD TLV % x: the new TEK is not held", c.v)
		}
		if from := dp.TEKs()[i].SendFrom; !from.Equal(at.Add(c.delay)) {
			t.Fatalf("ATD TLV % x: the new TEK sends from %s, want %s after the rekey (%s)", c.v, from, c.delay, at)
		}
	}
}

// proves: E3 — a GM rebuilds the KS's ordered ACL from the SATs' bypass
// attributes (deny entries before and after the permit entry, in order),
// hands it to an SA database that keeps a policy, and refuses a malformed
// list without installing anything; the TEKs themselves are exactly what
// a GM that ignores the attributes (1.0.1) installs, and a KS sending no
// deny entries gives a policy of the permit entries alone.
func TestInstallOrderedPolicy(t *testing.T) {
	any4 := netip.MustParsePrefix("0.0.0.0/0")
	deny := []isakmp.Selector{
		{Protocol: 17, Src: isakmp.PrefixEndpoint(any4, 848), Dst: isakmp.PrefixEndpoint(any4, 848)},
		{Protocol: 89, Src: isakmp.PrefixEndpoint(any4, 0), Dst: isakmp.PrefixEndpoint(any4, 0)},
	}
	plain := result(36, true)
	res := result(36, true)
	sat := res.Policy.TEKs[0]
	sat.Attributes = append(sat.Attributes, isakmp.VarAttr(isakmp.IPsecBypassBefore, isakmp.AppendSelectors(nil, deny)),
		isakmp.VarAttr(isakmp.IPsecBypassAfter, isakmp.AppendSelectors(nil, deny[1:])))

	dp := sadb.NewMemory()
	inst, err := Install(dp, dp, "G", 1, res, now)
	if err != nil {
		t.Fatal(err)
	}
	got := dp.Policy("G")
	if len(got) != 4 || len(inst.Policy) != 4 ||
		got[0].Action != sadb.Bypass || got[0].IPProto != 17 || got[0].SrcPort != 848 || got[0].DstPort != 848 || got[0].Src != any4 ||
		got[1].Action != sadb.Bypass || got[1].IPProto != 89 ||
		got[2].Action != sadb.Protect || got[2].SPI != 256 || got[2].Src != netip.MustParsePrefix("10.0.0.0/8") ||
		got[3].Action != sadb.Bypass || got[3].IPProto != 89 {
		t.Fatalf("policy %+v", got)
	}

	old := sadb.NewMemory()
	if _, err := Install(old, old, "G", 1, plain, now); err != nil {
		t.Fatal(err)
	}
	a, b := old.TEKs()[0], dp.TEKs()[0]
	if a.SPI != b.SPI || a.Src != b.Src || a.Dst != b.Dst || !bytes.Equal(a.EncKey, b.EncKey) || a.Expires != b.Expires {
		t.Fatalf("the bypass attributes changed the TEK: %+v vs %+v", a, b)
	}
	if p := old.Policy("G"); len(p) != 1 || p[0].Action != sadb.Protect || p[0].SPI != 256 {
		t.Fatalf("no deny entries: policy %+v", p)
	}

	bad := result(36, true)
	bad.Policy.TEKs[0].Attributes = append(bad.Policy.TEKs[0].Attributes, isakmp.VarAttr(isakmp.IPsecBypassBefore, []byte{17, 4, 0}))
	fresh := sadb.NewMemory()
	if _, err := Install(fresh, fresh, "G", 1, bad, now); err == nil || !strings.Contains(err.Error(), "groupvpn-Bypass-Before") {
		t.Fatalf("malformed bypass list: %v", err)
	}
	if len(fresh.TEKs()) != 0 || fresh.Policy("G") != nil {
		t.Fatal("something was installed from a malformed policy")
	}
}

// A rekey bringing a counter-mode (GCM) TEK to a GM that holds no sender
// ID (its registration gave it only CBC keys, so no SIDs: a policy replace
// from CBC to GCM) is installed for receiving, without SIDs, and asks for
// a registration (NeedSIDs); it was refused whole, and the GM kept keys the
// KS had replaced until it re-registered on its own (issue 13's bench: a
// 23 s outage after replace-now).
// proves: P3, P4, E2 (issue 13: a GCM policy reaches GMs that held only CBC keys)
func TestRekeyCounterModeWithoutSIDs(t *testing.T) {
	dp := sadb.NewMemory()
	dp.InstallTEK(sadb.TEK{Group: "G", SPI: 7, AuthKey: []byte{1}, Expires: now.Add(time.Hour)}) // CBC: no SIDs
	r := result(36, false)
	inst, err := ApplyRekey(dp, dp, "G", 1, &gdoi.Rekey{Seq: 1, SA: r.Policy, KD: r.KD}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !inst.NeedSIDs {
		t.Error("no registration asked for the sender IDs")
	}
	found := false
	for _, tk := range dp.TEKs() {
		if tk.SPI == 256 {
			found = len(tk.SenderIDs) == 0 && tk.SIDBits == 32 // its senders told apart by the IV's top 32 bits
		}
	}
	if !found {
		t.Fatalf("the GCM TEK is not installed without SIDs: %+v", dp.TEKs())
	}
	// With a SID held, the rekey's TEK gets it and nothing is asked.
	dp2 := sadb.NewMemory()
	if _, err := Install(dp2, dp2, "G", 1, result(36, true), now); err != nil {
		t.Fatal(err)
	}
	r2 := result(36, false)
	r2.Policy.TEKs[0].SPI = 512
	r2.KD.Packets[0].SPI = []byte{0, 0, 2, 0}
	if inst, err := ApplyRekey(dp2, dp2, "G", 1, &gdoi.Rekey{Seq: 1, SA: r2.Policy, KD: r2.KD}, now); err != nil || inst.NeedSIDs {
		t.Fatalf("%+v %v", inst, err)
	}
}

// nullDP is an SA database that keeps nothing (Install's own
// allocations, counted).
type nullDP struct{}

func (nullDP) InstallTEK(sadb.TEK) error         { return nil }
func (nullDP) DeleteTEK(string, uint32) error    { return nil }
func (nullDP) TEKs() []sadb.TEK                  { return nil }
func (nullDP) SetFailMode(string, sadb.FailMode) {}
func (nullDP) FailMode(string) sadb.FailMode     { return sadb.FailOpen }
func (nullDP) InstallKEK(sadb.KEK) error         { return nil }
func (nullDP) DeleteKEK(string) error            { return nil }
func (nullDP) KEKs() []sadb.KEK                  { return nil }

// proves: N1 (issue 18: allocations per registration, a load
// generator's 100,000 members) — Install sizes its TEK list and policy
// for the SATs it was given: a registration of two TEKs costs 4
// allocations (the Installed, its TEK list, its policy, the sender IDs),
// 6 when both lists grew by appending.
func TestInstallAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector; make test runs it without")
	}
	res := result(36, true)
	sat := *res.Policy.TEKs[0]
	sat.SPI = 257
	voice := netip.MustParsePrefix("172.16.0.0/12")
	sat.Selector = isakmp.Selector{Src: isakmp.PrefixEndpoint(voice, 0), Dst: isakmp.PrefixEndpoint(voice, 0)}
	res.Policy.TEKs = append(res.Policy.TEKs, &sat)
	res.KD.Packets = append(res.KD.Packets, &isakmp.KeyPacket{KDType: isakmp.KDTEK, SPI: []byte{0, 0, 1, 1},
		Attributes: isakmp.Attributes{isakmp.VarAttr(isakmp.TEKAlgorithmKey, bytes.Repeat([]byte{2}, 36))}})
	if inst, err := Install(nullDP{}, nullDP{}, "G", 1, res, now); err != nil || len(inst.TEKs) != 2 || len(inst.Policy) != 2 {
		t.Fatalf("installed %+v, %v", inst, err)
	}
	n := testing.AllocsPerRun(100, func() { Install(nullDP{}, nullDP{}, "G", 1, res, now) })
	t.Logf("%.0f allocations per Install of two TEKs", n)
	if n > 4 {
		t.Fatalf("%.0f allocations per Install of two TEKs, want at most 4", n)
	}
}

// proves: T1 (a member registering inside a rekey) — a registration that
// brings, after the new TEK, the TEK a rekey replaced for the same traffic
// (the KS hands it out while the other members may still send with it:
// ks/replaced.go) installs both, each with its own key and lifetime, so
// that the member opens the packets of members still sending with the
// replaced one, and the ordered policy takes the traffic's entries (its
// bypass lists and the permit entry) once, from the first TEK: the
// replaced TEK's would never match first. The re-registration is timed by
// the current TEK; a counter-mode replaced TEK gets no sender IDs (the
// download's are the current keys'); it is ordered after the current one
// for sending and accepted for the rekey's deactivation delay (90 s), not
// its whole life; one the member holds already is left as it is. Which
// TEK is the replaced one is by when they end (on a tie, the first listed
// is current), whatever their order.
func TestInstallReplacedTEKsAfterTheNew(t *testing.T) {
	any4 := netip.MustParsePrefix("0.0.0.0/0")
	deny := isakmp.AppendSelectors(nil, []isakmp.Selector{{Protocol: 17, Src: isakmp.PrefixEndpoint(any4, 848), Dst: isakmp.PrefixEndpoint(any4, 848)}})
	res := result(36, true)
	res.Policy.TEKs[0].Attributes = append(res.Policy.TEKs[0].Attributes, isakmp.VarAttr(isakmp.IPsecBypassBefore, deny))
	old := *res.Policy.TEKs[0]
	old.SPI = 257
	old.Attributes = isakmp.Attributes{isakmp.BasicAttr(isakmp.IPsecKeyLength, 256), isakmp.IntAttr(isakmp.IPsecSALifeDuration, 400),
		isakmp.VarAttr(isakmp.IPsecBypassBefore, deny)}
	res.Policy.TEKs = append(res.Policy.TEKs, &old)
	res.KD.Packets = append(res.KD.Packets, &isakmp.KeyPacket{KDType: isakmp.KDTEK, SPI: []byte{0, 0, 1, 1},
		Attributes: isakmp.Attributes{isakmp.VarAttr(isakmp.TEKAlgorithmKey, bytes.Repeat([]byte{2}, 36))}})
	dp := sadb.NewMemory()
	inst, err := Install(dp, dp, "G", 1, res, now)
	if err != nil {
		t.Fatal(err)
	}
	teks := dp.TEKs()
	slices.SortFunc(teks, func(a, b sadb.TEK) int { return int(a.SPI) - int(b.SPI) })
	if len(teks) != 2 || teks[0].SPI != 256 || teks[1].SPI != 257 || teks[1].EncKey[0] != 2 ||
		!teks[0].Expires.Equal(now.Add(1800*time.Second)) || !teks[1].Expires.Equal(now.Add(400*time.Second)) {
		t.Fatalf("installed %+v", teks)
	}
	// Ordered after the current TEK for sending (the latest SendFrom
	// first), and accepted for the rekey's deactivation delay, not its 400 s.
	if !teks[1].SendFrom.Before(teks[0].SendFrom) || !teks[1].Deactivate.Equal(now.Add(90*time.Second)) || !teks[0].Deactivate.IsZero() {
		t.Fatalf("sending from %s and %s, deactivated at %s and %s", teks[0].SendFrom, teks[1].SendFrom, teks[0].Deactivate, teks[1].Deactivate)
	}
	if inst.TEKs[0].SPI != 256 {
		t.Fatalf("Installed.TEKs[0] is 0x%x, not the current TEK (its lifetime times the re-registration)", inst.TEKs[0].SPI)
	}
	// A counter-mode one without sender IDs: the download's are for the
	// current keys, and the data plane never sends with it.
	// Its senders told apart by the IV's top 32 bits (each its own replay
	// window), whatever their width in its generation.
	if len(teks[0].SenderIDs) != 1 || len(teks[1].SenderIDs) != 0 || teks[1].SIDBits != 32 {
		t.Fatalf("sender IDs %v and %v (%d bits)", teks[0].SenderIDs, teks[1].SenderIDs, teks[1].SIDBits)
	}
	// The re-registration is timed by the current TEK, not the replaced
	// one's 400 s.
	if !inst.Earliest.Equal(now.Add(1800 * time.Second)) {
		t.Fatalf("re-register before %s", inst.Earliest)
	}
	if pol := dp.Policy("G"); len(pol) != 2 || pol[0].Action != sadb.Bypass || pol[1].Action != sadb.Protect || pol[1].SPI != 256 {
		t.Fatalf("policy %+v", pol)
	}

	// A member that holds the replaced TEK already (it got the rekey and
	// registers again inside its window) keeps it as it is: its sender
	// IDs, the deactivation the rekey set.
	dp = sadb.NewMemory()
	mine := teks[1]
	mine.SenderIDs, mine.Deactivate = []uint32{3}, now.Add(90*time.Second)
	if err := dp.InstallTEK(mine); err != nil {
		t.Fatal(err)
	}
	if _, err := Install(dp, dp, "G", 1, res, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(dp.TEKs(), func(tk sadb.TEK) bool { return tk.SPI == 257 })
	if got := dp.TEKs()[i]; !slices.Equal(got.SenderIDs, []uint32{3}) || !got.Deactivate.Equal(mine.Deactivate) || !got.Installed.Equal(mine.Installed) {
		t.Fatalf("the TEK held was installed again: %+v", got)
	}

	// Which is which is by the time they end, not their order: a KS that
	// lists the replaced TEK first gets the same.
	res.Policy.TEKs[0], res.Policy.TEKs[1] = res.Policy.TEKs[1], res.Policy.TEKs[0]
	dp = sadb.NewMemory()
	if inst, err = Install(dp, dp, "G", 1, res, now); err != nil {
		t.Fatal(err)
	}
	teks = dp.TEKs()
	slices.SortFunc(teks, func(a, b sadb.TEK) int { return int(a.SPI) - int(b.SPI) })
	pol := dp.Policy("G")
	if len(teks) != 2 || len(teks[0].SenderIDs) != 1 || len(teks[1].SenderIDs) != 0 || !inst.Earliest.Equal(now.Add(1800*time.Second)) ||
		len(pol) != 2 || pol[1].SPI != 256 || inst.TEKs[0].SPI != 256 {
		t.Fatalf("the replaced TEK listed first: installed %+v, policy %+v, re-register before %s", teks, pol, inst.Earliest)
	}

	// Two TEKs for the same traffic that end in the same second: the one
	// listed first is the current one.
	res.Policy.TEKs[0].Attributes = isakmp.Attributes{isakmp.BasicAttr(isakmp.IPsecKeyLength, 256), isakmp.IntAttr(isakmp.IPsecSALifeDuration, 1800)}
	dp = sadb.NewMemory()
	if inst, err = Install(dp, dp, "G", 1, res, now); err != nil {
		t.Fatal(err)
	}
	if pol := dp.Policy("G"); len(inst.TEKs) != 2 || inst.TEKs[0].SPI != 257 || len(inst.TEKs[0].SenderIDs) != 1 || len(inst.TEKs[1].SenderIDs) != 0 ||
		len(pol) != 1 || pol[0].SPI != 257 {
		t.Fatalf("equal ends: installed %+v", inst.TEKs)
	}
}
