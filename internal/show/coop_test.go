package show

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/coop"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/version"
)

// coopPeers are the golden KS's two peers: 192.0.2.2 heard (a 1.0.1
// secondary), 192.0.2.3 configured but never heard.
var coopPeers = []netip.Addr{netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")}

// coopStatus is the golden KS 192.0.2.1 (priority 100) of group GETVPN
// in role r, as the node reports it.
func coopStatus(now time.Time, r coop.Role) node.COOPStatus {
	st := node.COOPStatus{Local: netip.MustParseAddr("192.0.2.1"), Priority: 100, Role: r, Version: version.Current,
		Period: 20 * time.Second, Dead: 60 * time.Second, ElectionWait: 20 * time.Second,
		Stats:      coop.Stats{Sent: 41, Accepted: 40, Replayed: 1, Unknown: 2, Invalid: 0, Incompatible: 1, Elections: 1},
		MembersGen: 7,
		Peers: []coop.PeerStatus{
			{Addr: coopPeers[0], Reachable: true, Role: coop.Secondary, Priority: 50, Version: version.Base, Seq: 53, LastHeard: now.Add(-5 * time.Second)},
			{Addr: coopPeers[1]},
		}}
	switch r {
	case coop.Primary:
		st.Primary = st.Local
	case coop.Secondary:
		st.Primary = coopPeers[0]
		st.Peers[0].Role, st.Peers[0].Priority = coop.Primary, 200
		st.LastSync = now.Add(-12 * time.Second)
	case coop.Electing:
		st.Peers[0].Reachable, st.Peers[0].LastHeard = false, now.Add(-61*time.Second)
	}
	return st
}

// coopSnapshot is the golden snapshot with group GETVPN cooperative, this
// KS in role r.
func coopSnapshot(r coop.Role) node.Snapshot {
	s := snapshot()
	s.KS[0].Redundancy = &ks.Redundancy{Priority: 100, Peers: coopPeers}
	s.KS[0].Secondary = r != coop.Primary
	s.COOP = map[string]node.COOPStatus{"GETVPN": coopStatus(s.Now, r)}
	return s
}

func golden(t *testing.T, name, text string) {
	t.Helper()
	path := filepath.Join("testdata", name+".txt")
	if *update {
		os.WriteFile(path, []byte(text), 0o644)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v (go test -update creates it)", name, err)
	}
	if text != string(want) {
		t.Errorf("%s differs from %s:\n%s", name, path, text)
	}
}

// proves: C1 (issue 16: `show crypto gdoi ks coop` and the COOP lines of
// `show crypto gdoi` in IOS's layout for a primary, a secondary and a KS in
// election, fixed by golden files), V3 (each peer's announced version)
func TestCOOPGolden(t *testing.T) {
	for _, r := range []coop.Role{coop.Primary, coop.Secondary, coop.Electing} {
		s := coopSnapshot(r)
		role := strings.ToLower(r.String())
		text, _ := COOP(s)
		golden(t, "show_crypto_gdoi_ks_coop_"+role, text)
		gdoi, _ := GDOI(s)
		want := "    Redundancy               : Configured\n" +
			"        Local Address        : 192.0.2.1\n" +
			"        Local Priority       : 100\n" +
			"        Local KS Status      : Alive\n" +
			"        Local KS Role        : " + r.String() + "\n" +
			"        Local KS Version     : " + version.Current.String() + "\n"
		if !strings.Contains(gdoi, want) {
			t.Errorf("show crypto gdoi (%s) lacks\n%s\n---\n%s", role, want, gdoi)
		}
		if r == coop.Primary {
			golden(t, "show_crypto_gdoi_coop_primary", gdoi)
		}
	}
	// IOS's role column: "Primary   , " and "Secondary , ".
	text, _ := COOP(coopSnapshot(coop.Secondary))
	for _, want := range []string{
		"Crypto Gdoi Group Name :GETVPN\n",
		"        Local KS Role: Secondary , Local KS Status: Alive\n",
		"                Peer KS Role: Primary   , Peer KS Status: Alive\n",
		"                Peer Version: 1.0.1\n",
		"                Peer KS Role: Unknown   , Peer KS Status: Dead\n",
		"        Last Sync: 12 secs ago\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("show crypto gdoi ks coop (secondary) lacks %q:\n%s", want, text)
		}
	}
}

// proves: C1 (issue 16: a key server without redundancy answers `show
// crypto gdoi ks coop` with one line saying so, and its `| json` has no
// group)
func TestCOOPNotConfigured(t *testing.T) {
	text, data := COOP(snapshot())
	if text != "% COOP is not configured for any group\n" {
		t.Errorf("text %q", text)
	}
	if v := data.(COOPJSON); len(v.Groups) != 0 || v.Command != "show crypto gdoi ks coop" {
		t.Errorf("json %+v", v)
	}
}

// proves: V3, V4 (issue 16: `show crypto gdoi feature` lists every KS of
// the group the key server reports, the local one and each COOP peer with
// the version it announced, sorted by address as the seed lists them,
// before the members; a peer never heard is unknown and "No", a 1.0.1
// peer "No"; | json lists them in the same order)
func TestFeatureKeyServersSorted(t *testing.T) {
	// As ks.Server.Features gives them: this KS first, then its peers.
	rows := []ks.FeatureRow{{ID: netip.MustParseAddr("192.0.2.2"), Version: version.Current, Supported: true},
		{ID: netip.MustParseAddr("192.0.2.3")}, {ID: netip.MustParseAddr("192.0.2.1"), Version: version.Base}}
	tables := []FeatureTable{{Group: "GETVPN", KeyServers: rows,
		Members: []ks.FeatureRow{{ID: netip.MustParseAddr("192.0.2.10"), Version: version.Current, Supported: true}}}}
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	text, data := Features("gm-removal", now, tables)
	golden(t, "show_crypto_gdoi_feature_coop", text)
	ksPart := text[:strings.Index(text, "Group Member ID")]
	want := "          192.0.2.1         1.0.1           No\n          192.0.2.2         " + version.Current.String() + "           Yes\n          192.0.2.3         unknown         No\n"
	if !strings.Contains(ksPart, want) {
		t.Errorf("key servers not sorted, or wrong:\n%s", text)
	}
	if rows[0].ID != netip.MustParseAddr("192.0.2.2") {
		t.Error("the caller's rows were reordered")
	}
	v := data.(FeaturesJSON)
	if got := v.Groups[0].KeyServers; len(got) != 3 || got[0].Address != "192.0.2.1" || got[2].Address != "192.0.2.3" || got[2].Version != "" || got[2].Supported {
		t.Errorf("json key servers %+v", got)
	}
}
