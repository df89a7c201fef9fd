package show

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/coop"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/keystore"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/show/jsoncheck"
	"github.com/groupvpn/groupvpn/internal/tmd"
	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

// jsonSnapshot is the golden snapshot with what only some commands show:
// a phase-1 SA, a completed rekey, a TBAR TEK on the KS, an unserved KS
// address, counters, a fail-close group and a multicast KEK.
func jsonSnapshot() node.Snapshot {
	s := snapshot()
	now := s.Now
	s.KS[0].KEKSPI = [isakmp.KEKSPILen]byte{0x0a, 0xbc, 15: 0x01}
	s.KS[0].Pseudotime = 1234567 * time.Millisecond
	s.KS[0].NextResync = now.Add(5400 * time.Second)
	t2 := s.KS[0].TEKs[0]
	t2.SPI, t2.Replay, t2.ReplayWindow, t2.ACLName = 0x0000beef, isakmp.ReplayTime, 5, ""
	s.KS[0].TEKs = append(s.KS[0].TEKs, t2)
	s.KS[0].Members[0].Port, s.KS[0].Members[0].Missed, s.KS[0].Members[0].LastAckSeq = 848, 1, 2
	s.KS[0].Members[1].Removed = true
	s.LastRekeys = map[string]node.LastRekey{"GETVPN": {Seq: 3, Started: now.Add(-10 * time.Minute), Took: 1250 * time.Millisecond, Retransmits: 1}}
	s.Unserved = map[string]netip.Addr{"GETVPN": netip.MustParseAddr("192.0.2.1")}
	id := &isakmp.ID{IDType: isakmp.IDIPv4Addr, Data: netip.MustParseAddr("192.0.2.1").AsSlice()}
	s.Phase1 = []ike.Info{{Initiator: true, Local: netip.MustParseAddrPort("192.0.2.10:848"), Peer: netip.MustParseAddrPort("192.0.2.1:848"),
		ICookie: isakmp.Cookie{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}, RCookie: isakmp.Cookie{0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10},
		Suite:  ike.Suite{KeyBits: 256, Hash: ike.SHA256, Group: 19, Auth: ike.AuthPSK, Lifetime: 24 * time.Hour},
		PeerID: id, PeerVersion: version.Current, PeerDPD: true, EstablishedAt: now.Add(-time.Hour), Expires: now.Add(23 * time.Hour),
		DPD: ike.DPDState{Timer: ike.DPD{Interval: 10 * time.Second, Retry: 2 * time.Second}, Outstanding: 1, Next: now.Add(2 * time.Second), LastAlive: now.Add(-10 * time.Second)}}}
	s.ISAKMPCounters = []ike.Counter{{Name: "malformed", Value: 2}, {Name: "half_open_refused", Value: 0}}
	s.GMCounters = []ike.Counter{{Name: "rekeys_rejected", Value: 1}}
	s.KSCounters = []ike.Counter{{Name: "acks_unknown", Value: 4}}
	s.StoreCounters = []ike.Counter{{Name: "records_damaged", Value: 0}}
	s.LogCounters = []ike.Counter{{Name: "suppressed", Value: 9}}
	s.KS[0].Redundancy = &ks.Redundancy{Priority: 100, Peers: coopPeers}
	s.COOP = map[string]node.COOPStatus{"GETVPN": coopStatus(now, coop.Primary)}
	s.COOPCounters = []ike.Counter{{Name: "ann_sent", Value: 41}, {Name: "ann_replayed", Value: 1}}
	s.TEKs[0].Installed = now.Add(-time.Minute)
	s.TEKs[0].SendFrom = now.Add(30 * time.Second)
	s.TEKs[0].SenderIDs, s.TEKs[0].SIDBits = []uint32{7, 8}, 12
	s.KEKs[0].SPI = [isakmp.KEKSPILen]byte{0x0a, 0xbc, 15: 0x01}
	s.KEKs[0].Multicast = netip.MustParseAddrPort("239.192.1.1:848")
	s.KEKs[0].Ack = true
	s.GM[0].Rekeys.Received, s.GM[0].Rekeys.AcksSent, s.GM[0].Rekeys.LastRekey = 1, 1, now.Add(-10*time.Minute)
	return s
}

// jsonCounters are tmd's counters for the golden SA.
func jsonCounters() *IPsecCounters {
	return &IPsecCounters{
		SAs: []tmd.TEKCounters{{Group: "GETVPN", SPI: 0x1a2b3c4d, SACounters: tmd.SACounters{EncapsPackets: 11, EncapsBytes: 1100,
			DecapsPackets: 7, DecapsBytes: 700, ReplayDrops: 2, AuthFailures: 3, TBARDrops: 4}}},
		DataPlane: &tmd.DataPlaneCounters{Device: "gvtun", Counters: []tmd.Counter{{Name: "no_sa", Value: 4}, {Name: "tbar", Value: 9}}},
	}
}

const jsonPolicy = `hostname ks1
crypto isakmp policy 10
 encryption aes 128
 hash sha256
 authentication pre-share
 group 19
crypto isakmp key secret address 0.0.0.0 0.0.0.0
ip access-list extended GETVPN-ACL
 permit ip 10.0.0.0 0.255.255.255 10.0.0.0 0.255.255.255
crypto ipsec transform-set ts-cbc esp-aes 128 esp-sha-hmac
crypto ipsec profile GETVPN-PROF
 set transform-set ts-cbc
crypto gdoi group GETVPN
 identity number 1234
 server local
  address ipv4 192.0.2.1
  sa ipsec 1
   profile GETVPN-PROF
   match address ipv4 GETVPN-ACL
   replay counter window-size 64
`

func parsePolicy(t *testing.T, text string) *policy.Config {
	t.Helper()
	c, err := policy.Parse("golden.conf", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// goldenKeyPEM is a fixed EC P-256 key pair, for the key store's goldens
// (a test key, used nowhere else).
const goldenKeyPEM = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgvOr+rXY9wWpq2i1p
4v0IEWEneslkxHgu9JNgEV5B84ChRANCAARemKAdYuW+OoH/jarkmpZIBUEW+v6v
fWz4WeD4nn7rp3P+eFwcZDsMPLwwxiMYqaTXOu2xjVOciDsmztIkWUIp
-----END PRIVATE KEY-----
`

func goldenKeys(t *testing.T, now time.Time) []KeyJSON {
	signer, err := keystore.ParsePrivateKey([]byte(goldenKeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	k := &keystore.Key{Label: "REKEY", Type: "ec", Bits: 256, Signer: signer, Stored: now.Add(-24 * time.Hour)}
	return []KeyJSON{KeyView(k, "/var/lib/groupvpn/keys")}
}

// jsonCommands are every show command's `| json` value from the golden
// state, by golden file name. A show command added to the daemon needs
// an entry here (TestEveryShowCommandHasAJSONGolden in internal/daemon).
func jsonCommands(t *testing.T) map[string]any {
	s := jsonSnapshot()
	now := s.Now
	c := jsonCounters()
	maps := map[string]CryptoMapRef{"GETVPN": {Map: "GETVPN-MAP", Interface: "eth0"}}
	base := parsePolicy(t, jsonPolicy)
	run := parsePolicy(t, strings.Replace(jsonPolicy, "window-size 64", "window-size 128", 1))
	features := []FeatureTable{{Group: "GETVPN",
		KeyServers: []ks.FeatureRow{{ID: netip.MustParseAddr("192.0.2.1"), Version: version.Current, Supported: true}},
		Members: []ks.FeatureRow{{ID: netip.MustParseAddr("192.0.2.10"), Version: version.Current, Supported: true},
			{ID: netip.MustParseAddr("192.0.2.11")}}}}
	sections := []Section{{Key: "broker", Title: "Broker", Counters: []ike.Counter{{Name: "short", Value: 7}}},
		{Key: "sa_database", Title: "tmd", Err: "tmd: timeout"}, {Key: "control_socket", Title: "Control socket",
			Counters: []ike.Counter{{Name: "connections_open", Value: 1}}}}
	sections = append(sections, StatisticsSections(s)...)
	return map[string]any{
		"show_crypto_gdoi":                        GDOIView(s),
		"show_crypto_gdoi_ks_members":             KSMembersView(s),
		"show_crypto_gdoi_gm":                     GMView(s),
		"show_crypto_ipsec_sa":                    IPsecSAView(s, c, maps),
		"show_crypto_isakmp_sa":                   ISAKMPSAView(s),
		"show_crypto_isakmp_sa_detail":            ISAKMPSADetailView(s),
		"show_crypto_isakmp_listen":               ListenView(s),
		"show_crypto_isakmp_statistics":           StatisticsView(s, sections),
		"show_crypto_gdoi_ks_replay":              KSReplayView(s),
		"show_crypto_gdoi_gm_replay":              GMReplayView(s, c),
		"show_crypto_gdoi_gm_counters":            GMCountersView(s),
		"show_crypto_gdoi_ks_counters":            KSCountersView(s),
		"show_crypto_gdoi_ks_coop":                COOPView(s),
		"show_crypto_gdoi_feature_gm-removal":     FeaturesView("gm-removal", now, features),
		"show_crypto_gdoi_feature_policy-replace": FeaturesView("policy-replace", now, features),
		"show_crypto_gdoi_ks_policy":              KSPolicyView(now, run, policy.Diff(base, run)),
		"show_version":                            VersionView(s, Build{Started: now.Add(-26 * time.Hour), OS: "linux", Arch: "amd64", GoVersion: "go1.24.0"}),
		"show_clock":                              ClockView(now.Add(123 * time.Millisecond)),
		"show_running-config":                     RunningConfigView(now, run.Render()),
		"show_crypto_key_mypubkey_rsa":            KeysView("rsa", now, nil, nil),
		"show_crypto_key_mypubkey_ec":             KeysView("ec", now, goldenKeys(t, now), nil),
		"show_crypto_key_mypubkey_all": KeysView("", now, goldenKeys(t, now),
			[]error{errors.New("keystore: /var/lib/groupvpn/keys/OLD.pem: not a PEM private key")}),
		"show_logging": LoggingView(now, Logging{Sinks: true, BufferSize: 4096, BufferLevel: 7,
			Lines: []string{"<189>1 2026-11-22T11:59:00.000000Z ks1 isakmpd - GDOI-5-KS_REGS_COMPL - Registration complete"},
			Trap:  6, Facility: "local7", Hosts: []string{"udp://192.0.2.50:514"}, Sent: 12, HostDrops: 1}),
	}
}

// indentJSON is what `| json` prints for v: the control socket marshals
// a reply's Data, the filter indents it by two spaces.
func indentJSON(t *testing.T, v any) []byte {
	t.Helper()
	var raw bytes.Buffer
	enc := json.NewEncoder(&raw)
	enc.SetEscapeHTML(false) // as ctl's server
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := json.Indent(&b, bytes.TrimSuffix(raw.Bytes(), []byte("\n")), "", "  "); err != nil {
		t.Fatal(err)
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// proves: O7, O2 (issue 14 item 5: every show command's `| json` follows
// the documented, versioned schema, fixed byte for byte by a golden file
// from a deterministic snapshot; go test -update rewrites them)
func TestJSONGolden(t *testing.T) {
	for name, v := range jsonCommands(t) {
		got := indentJSON(t, v)
		path := filepath.Join("testdata", "json", name+".json")
		if *update {
			os.MkdirAll(filepath.Dir(path), 0o755)
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (go test -update creates it)", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s | json differs from %s:\n%s", name, path, got)
		}
	}
}

// proves: O7 (issue 14 item 5: every key of every golden `| json` is
// snake_case; no value is a Go zero time, a Go duration string or a
// nanosecond count; times are RFC 3339 UTC, SPIs and cookies 0x hex;
// nothing is null, "" or [] (absent instead); every object carries the
// schema and its command) — a field added in camel case, or a
// time.Duration mapped as is, fails here.
func TestJSONConventions(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "json", "*.json"))
	if err != nil || len(files) < len(jsonCommands(t)) {
		t.Fatalf("golden files: %v %v", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range jsoncheck.Check(b, Schema) {
			t.Errorf("%s: %s", f, e)
		}
	}
	// The checker itself catches what the Go structs used to print.
	for _, bad := range []string{
		`{"schema":"groupvpn.show/1","command":"show x","ACLName":"a"}`,
		`{"schema":"groupvpn.show/1","command":"show x","expires_at":"0001-01-01T00:00:00Z"}`,
		`{"schema":"groupvpn.show/1","command":"show x","lifetime_seconds":3600000000000}`,
		`{"schema":"groupvpn.show/1","command":"show x","lifetime":3600000000000}`,
		`{"schema":"groupvpn.show/1","command":"show x","spi":"1A2B"}`,
		`{"schema":"groupvpn.show/1","command":"show x","teks":[]}`,
		`{"schema":"groupvpn.show/1","command":"show x","rekeys_sent":null}`,
		`{"command":"show x"}`,
	} {
		if len(jsoncheck.Check([]byte(bad), Schema)) == 0 {
			t.Errorf("the checker accepts %s", bad)
		}
	}
}

// proves: O7 (issue 14 item 5: 0 is printed where it means something: a
// remaining lifetime or a counter at 0 stays in the output, an expired
// TEK shows remaining_seconds 0, a unicast member's rekeys_sent 0)
func TestJSONZeroIsPrinted(t *testing.T) {
	s := jsonSnapshot()
	s.Now = s.TEKs[0].Expires.Add(time.Second)
	s.KS[0].Members[1].RekeysSent = 0
	b := indentJSON(t, IPsecSAView(s, nil, nil))
	if !bytes.Contains(b, []byte(`"remaining_seconds": 0`)) {
		t.Errorf("an expired SA lacks remaining_seconds 0:\n%s", b)
	}
	b = indentJSON(t, KSMembersView(s))
	if !bytes.Contains(b, []byte(`"rekeys_sent": 0`)) || !bytes.Contains(b, []byte(`"rekey_acks_missed": 0`)) {
		t.Errorf("zero counters left out:\n%s", b)
	}
	s.KS[0].Unicast = false // multicast: no per-member rekey counts at all
	if b = indentJSON(t, KSMembersView(s)); bytes.Contains(b, []byte(`"rekey_retries"`)) {
		t.Errorf("per-member rekey counts with multicast rekeys:\n%s", b)
	}
}

// goldenKeys adds to keys every key of v, except counter names (the
// objects under "counters" and "unavailable" are keyed by name).
func collectKeys(v any, keys map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			keys[k] = true
			if k != "counters" && k != "unavailable" {
				collectKeys(e, keys)
			}
		}
	case []any:
		for _, e := range x {
			collectKeys(e, keys)
		}
	}
}

// proves: O7 (issue 14 item 5: the schema is documented: every key of
// every golden `| json` file is named in docs/json.md, and every golden's
// command has a section there)
func TestJSONKeysDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "json.md"))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for name, v := range jsonCommands(t) {
		var d map[string]any
		if err := json.Unmarshal(indentJSON(t, v), &d); err != nil {
			t.Fatal(err)
		}
		collectKeys(d, keys)
		if cmd := d["command"].(string); !bytes.Contains(doc, []byte("`"+cmd+"`")) {
			t.Errorf("%s: docs/json.md has no section for `%s`", name, cmd)
		}
	}
	for k := range keys {
		if !bytes.Contains(doc, []byte("`"+k+"`")) && !bytes.Contains(doc, []byte("`"+k+"[]`")) {
			t.Errorf("docs/json.md does not document the key `%s`", k)
		}
	}
}

// proves: O7 (issue 14 item 5: absent rather than empty: a node with no
// group, SA, counter or key gives every show command's `| json` without
// a null, "", [] or {} anywhere, and without a zero time)
func TestJSONEmptyStateIsAbsent(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	s := node.Snapshot{Now: now, Version: version.Current}
	empty := &IPsecCounters{DataPlane: &tmd.DataPlaneCounters{}, SAs: nil}
	for name, v := range map[string]any{
		"gdoi": GDOIView(s), "ks members": KSMembersView(s), "gm": GMView(s), "ipsec sa": IPsecSAView(s, empty, nil),
		"isakmp sa": ISAKMPSAView(s), "listen": ListenView(s), "statistics": StatisticsView(s, []Section{{Key: "broker"}}),
		"ks replay": KSReplayView(s), "gm replay": GMReplayView(s, nil), "gm counters": GMCountersView(s), "ks counters": KSCountersView(s),
		"feature": FeaturesView("gm-removal", now, nil), "ks coop": COOPView(s), "ks policy": KSPolicyView(now, nil, nil), "version": VersionView(s, Build{}),
		"logging": LoggingView(now, Logging{}), "keys": KeysView("rsa", now, nil, nil),
	} {
		for _, e := range jsoncheck.Check(indentJSON(t, v), Schema) {
			t.Errorf("%s (empty node): %s", name, e)
		}
	}
}
