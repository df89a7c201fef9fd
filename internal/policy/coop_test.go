package policy

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// coopKS is ksBase with a key server address, signed rekeys and a
// redundancy block: what a cooperative KS looks like.
func coopKS(redundancy string) string {
	return strings.Replace(ksBase, "  sa ipsec 1\n",
		"  rekey authentication mypubkey rsa GETVPN-REKEY\n  rekey transport unicast\n  address ipv4 10.0.0.1\n  redundancy\n"+redundancy+"  sa ipsec 1\n", 1) +
		"crypto key import rsa GETVPN-REKEY file ks-rekey.pem\ncrypto isakmp key ks2 address 10.0.0.2\ncrypto isakmp key ks3 address 10.0.0.3\n"
}

// proves: C1 (issue 16: `redundancy` with local priority, peers and the
// groupvpn timers parses into the model and renders back to itself)
func TestRedundancyParseRenderRoundTrip(t *testing.T) {
	src := coopKS("   local priority 100\n   peer address ipv4 10.0.0.2\n   peer address ipv4 10.0.0.3\n   timers announce 5\n   timers dead 16\n   timers election-wait 7\n")
	c := mustParse(t, src)
	r := c.Group("G").Server.Redundancy
	if r == nil {
		t.Fatal("no Redundancy")
	}
	if r.LocalPriority != 100 || r.Priority() != 100 {
		t.Errorf("priority %d (%d)", r.LocalPriority, r.Priority())
	}
	if want := []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")}; len(r.Peers) != 2 || r.Peers[0] != want[0] || r.Peers[1] != want[1] {
		t.Errorf("peers %v", r.Peers)
	}
	if p, d, e := r.Timers(); p != 5*time.Second || d != 16*time.Second || e != 7*time.Second {
		t.Errorf("timers %v %v %v", p, d, e)
	}
	out := c.Render()
	for _, l := range []string{"  redundancy\n   local priority 100\n   peer address ipv4 10.0.0.2\n   peer address ipv4 10.0.0.3\n   timers announce 5\n   timers dead 16\n   timers election-wait 7\n"} {
		if !strings.Contains(out, l) {
			t.Errorf("rendering lacks %q:\n%s", l, out)
		}
	}
	again := mustParse(t, out)
	if again.Render() != out {
		t.Errorf("render is not a fixed point:\n%s\n---\n%s", out, again.Render())
	}
}

// proves: C1 (issue 16: without local priority or timers the IOS default
// priority 1 and the groupvpn defaults 20/60/20 s apply, and nothing is
// rendered for them)
func TestRedundancyDefaults(t *testing.T) {
	c := mustParse(t, coopKS("   peer address ipv4 10.0.0.2\n"))
	r := c.Group("G").Server.Redundancy
	if r.Priority() != 1 {
		t.Errorf("default priority %d, want IOS's 1", r.Priority())
	}
	if p, d, e := r.Timers(); p != 20*time.Second || d != 60*time.Second || e != 20*time.Second {
		t.Errorf("default timers %v %v %v", p, d, e)
	}
	if out := c.Render(); strings.Contains(out, "local priority") || strings.Contains(out, "timers") {
		t.Errorf("defaults rendered:\n%s", out)
	}
	// The dead interval follows a configured period (three of them).
	c = mustParse(t, coopKS("   timers announce 30\n"))
	if _, d, _ := c.Group("G").Server.Redundancy.Timers(); d != 90*time.Second {
		t.Errorf("dead with announce 30: %v", d)
	}
}

// proves: C1 (issue 16: the KS's own address, a peer twice, more than 64
// peers, a priority outside 1-100, a dead interval not above the period
// and redundancy without address ipv4 are refused with file:line)
func TestRedundancyErrors(t *testing.T) {
	src := coopKS("   local priority 101\n   local priority 0\n   peer address ipv4 10.0.0.1\n   peer address ipv4 10.0.0.2\n   peer address ipv4 10.0.0.2\n   peer address ipv4 2001:db8::1\n   timers announce 0\n   timers dead 20\n")
	l := func(s string) string { return itoa(line(t, src, s)) }
	mustFail(t, src,
		l("local priority 101")+`: local priority 101 is out of range (accepted: 1-100)`,
		l("local priority 0")+`: local priority 0 is out of range (accepted: 1-100)`,
		l("peer address ipv4 10.0.0.1")+`: peer address ipv4 10.0.0.1 is this key server's own address (address ipv4, line `+l("  address ipv4 10.0.0.1")+`); list the other key servers of group G`,
		itoa(line(t, src, "peer address ipv4 10.0.0.2")+1)+`: peer address ipv4 10.0.0.2 is already configured (line `+l("peer address ipv4 10.0.0.2")+`)`,
		l("2001:db8::1")+`: peer address ipv4 "2001:db8::1" is not an IPv4 address`,
		l("timers announce 0")+`: timers announce 0 is out of range (accepted: 1-3600)`,
		l("timers dead 20")+`: redundancy: timers dead 20 must be longer than timers announce 20 (a peer is dead after missing announcements; the default dead interval is 3 announcement periods)`,
	)

	var b strings.Builder
	for i := range MaxCOOPPeers + 1 {
		b.WriteString("   peer address ipv4 10.0.1." + itoa(i+1) + "\n")
	}
	src = coopKS(b.String())
	mustFail(t, src, l2(t, src, "10.0.1.65")+`: peer address ipv4 10.0.1.65: a key server cooperates with at most 64 peers`)

	// A cooperative KS needs its own address.
	src = strings.Replace(ksBase, "  sa ipsec 1\n", "  redundancy\n   peer address ipv4 10.0.0.2\n  sa ipsec 1\n", 1)
	mustFail(t, src, l2(t, src, "redundancy")+`: crypto gdoi group G: redundancy needs address ipv4 A.B.C.D under server local: this key server's address, which its peers list (peer address ipv4), the key servers talk between and the election's tie-break`)

	// The period alone may not reach a configured dead interval either.
	src = coopKS("   timers dead 30\n   timers announce 30\n")
	mustFail(t, src, l2(t, src, "timers dead 30")+`: redundancy: timers dead 30 must be longer than timers announce 30 (a peer is dead after missing announcements; the default dead interval is 3 announcement periods)`)
}

func l2(t *testing.T, src, s string) string { t.Helper(); return itoa(line(t, src, s)) }

// proves: C1 (issue 16: a redundancy group whose rekeys are not signed is
// accepted with a note saying what that means; with rekey authentication
// there is no note)
func TestRedundancyWithoutRekeyKeyIsNoted(t *testing.T) {
	src := strings.Replace(ksBase, "  sa ipsec 1\n", "  address ipv4 10.0.0.1\n  redundancy\n   peer address ipv4 10.0.0.2\n  sa ipsec 1\n", 1) + "crypto isakmp key ks2 address 10.0.0.2\n"
	c := mustParse(t, src)
	if len(c.Notes) != 1 || c.Notes[0].Line != line(t, src, "redundancy") || !strings.Contains(c.Notes[0].Msg, "redundancy without rekey authentication") {
		t.Errorf("notes %v", c.Notes)
	}
	if c := mustParse(t, coopKS("   peer address ipv4 10.0.0.2\n")); len(c.Notes) != 0 {
		t.Errorf("notes with rekey authentication: %v", c.Notes)
	}
}

// proves: C1 (issue 16: configure terminal edits the redundancy block:
// peers added and removed, a timer back to its default with its no form,
// a duplicate peer refused with the parser's reason)
func TestRedundancyEdit(t *testing.T) {
	c := mustParse(t, coopKS("   local priority 10\n   peer address ipv4 10.0.0.2\n   timers dead 90\n"))
	e := NewEditor(c)
	for _, l := range []string{"crypto gdoi group G", "server local", "redundancy", "peer address ipv4 10.0.0.3", "no peer address ipv4 10.0.0.2", "no timers dead", "timers announce 10"} {
		if _, err := e.Apply(l); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
	}
	if _, err := e.Apply("peer address ipv4 10.0.0.3"); err == nil || !strings.Contains(err.Error(), "peer address ipv4 10.0.0.3 is already configured") {
		t.Errorf("duplicate peer: %v", err)
	}
	if _, err := e.Apply("end"); err != nil {
		t.Fatal(err)
	}
	n, err := e.Candidate()
	if err != nil {
		t.Fatal(err)
	}
	r := n.Group("G").Server.Redundancy
	if len(r.Peers) != 1 || r.Peers[0] != netip.MustParseAddr("10.0.0.3") || r.Dead != 0 || r.Period != 10*time.Second || r.LocalPriority != 10 {
		t.Errorf("edited: %+v", r)
	}
}

// proves: C1 (issue 16: config check's summary says a group is served by
// cooperative key servers, with the priority in effect and the peers)
func TestRedundancySummary(t *testing.T) {
	c := mustParse(t, coopKS("   peer address ipv4 10.0.0.2\n   peer address ipv4 10.0.0.3\n"))
	if got, want := c.Summary(), "key server for G (identity 1, 1 sa ipsec, rekey unicast, cooperative: priority 1, peers 10.0.0.2 10.0.0.3)"; !strings.Contains(got, want) {
		t.Errorf("summary %q lacks %q", got, want)
	}
}

// proves: C1 (issue 16, review finding 3: a peer KS is authenticated as a
// KS, not by address): `peer address ipv4 A identity SUBJECT` parses and
// renders back; a peer with neither an identity nor a pre-shared key for
// exactly its address (only the 0.0.0.0 key members hold) gets a note.
func TestRedundancyPeerAuthorization(t *testing.T) {
	src := strings.Replace(ksBase, "  sa ipsec 1\n", "  rekey authentication mypubkey rsa GETVPN-REKEY\n  rekey transport unicast\n  address ipv4 10.0.0.1\n  redundancy\n   peer address ipv4 10.0.0.2 identity CN=ks2,O=Example Corp\n   peer address ipv4 10.0.0.3\n   peer address ipv4 10.0.0.4\n  sa ipsec 1\n", 1) +
		"crypto key import rsa GETVPN-REKEY file ks-rekey.pem\ncrypto isakmp key ks3 address 10.0.0.3\n"
	c := mustParse(t, src)
	r := c.Group("G").Server.Redundancy
	if r.PeerIdentity(0) != "CN=ks2,O=Example Corp" || r.PeerIdentity(1) != "" || r.PeerIdentity(2) != "" {
		t.Fatalf("identities %q", r.PeerIdentities)
	}
	if !c.HostPSK(netip.MustParseAddr("10.0.0.3")) || c.HostPSK(netip.MustParseAddr("10.0.0.4")) {
		t.Fatal("HostPSK")
	}
	if len(c.Notes) != 1 || c.Notes[0].Line != line(t, src, "peer address ipv4 10.0.0.4") || !strings.Contains(c.Notes[0].Msg, "nothing authenticates this peer as a key server") {
		t.Fatalf("notes %v", c.Notes)
	}
	if out := c.Render(); !strings.Contains(out, "   peer address ipv4 10.0.0.2 identity CN=ks2,O=Example Corp\n") {
		t.Fatalf("render:\n%s", out)
	}
	mustFail(t, strings.Replace(src, " identity CN=ks2,O=Example Corp", " identity", 1), l2(t, src, "10.0.0.2 identity")+": peer address ipv4 10.0.0.2: expected identity SUBJECT (the peer key server's certificate subject, e.g. CN=ks2,O=Example, or its common name)")
}
