package dataplane

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata")

// clearInKeys is a sadb.Memory with the groups of the clear-packet tests:
//
//   - "a-site" (fail-close, a sending TEK): a deny of UDP to port 9999
//     and a permit of the sites, so deny -> accept, permit -> drop;
//   - "b-boot" (fail-close, no TEK: the bootstrap policy before the
//     first registration): GDOI to the KS accepted, everything else drops;
//   - "c-open" (fail-open, no TEK): its permit accepts (clear both ways);
//   - "d-ro" (receive-only TEK): its permit accepts (migration);
//   - "e-sel" (a TEK, no policy kept): the TEK's selector drops;
//   - "f-v6" holds an IPv6 entry only (never matches IPv4: left out);
//   - "z-unconfigured" has a policy but is neither configured nor holds
//     a TEK: the engine ignores it, so does the table.
func clearInKeys(now time.Time) (*sadb.Memory, []string) {
	p := netip.MustParsePrefix
	any4 := p("0.0.0.0/0")
	sites := p("10.1.0.0/16")
	m := sadb.NewMemory()
	tek := func(group string, spi uint32, ro bool, sel netip.Prefix) {
		if err := m.InstallTEK(sadb.TEK{Group: group, SPI: spi, Src: sel, Dst: sel, ReceiveOnly: ro,
			SendFrom: now.Add(-time.Minute), Expires: now.Add(time.Hour)}); err != nil {
			panic(err)
		}
	}
	tek("a-site", 0x100, false, sites)
	m.SetFailMode("a-site", sadb.FailClose)
	m.SetPolicy("a-site", []sadb.PolicyEntry{
		{Action: sadb.Bypass, IPProto: 17, Src: sites, Dst: sites, DstPort: 9999},
		{Action: sadb.Protect, Src: sites, Dst: sites, SPI: 0x100},
	})
	m.SetFailMode("b-boot", sadb.FailClose)
	m.SetPolicy("b-boot", []sadb.PolicyEntry{
		{Action: sadb.Bypass, IPProto: 17, Src: any4, Dst: p("192.0.2.1/32"), DstPort: 848},
		{Action: sadb.Bypass, IPProto: 17, Src: p("192.0.2.1/32"), SrcPort: 848, Dst: any4},
		{Action: sadb.Protect, Src: any4, Dst: any4},
	})
	m.SetFailMode("c-open", sadb.FailOpen)
	m.SetPolicy("c-open", []sadb.PolicyEntry{{Action: sadb.Protect, IPProto: 6, Src: p("10.3.0.0/16"), Dst: p("10.3.0.0/16"), DstPort: 443}})
	tek("d-ro", 0x200, true, p("10.4.0.0/16"))
	m.SetFailMode("d-ro", sadb.FailClose)
	m.SetPolicy("d-ro", []sadb.PolicyEntry{{Action: sadb.Protect, Src: p("10.4.0.0/16"), Dst: p("10.4.0.0/16"), SPI: 0x200}})
	tek("e-sel", 0x300, false, p("10.5.0.0/16"))
	m.SetFailMode("f-v6", sadb.FailClose)
	m.SetPolicy("f-v6", []sadb.PolicyEntry{{Action: sadb.Protect, Src: p("2001:db8::/32"), Dst: p("2001:db8::/32")}})
	m.SetPolicy("z-unconfigured", []sadb.PolicyEntry{{Action: sadb.Protect, Src: any4, Dst: any4}})
	return m, []string{"f-v6", "c-open", "b-boot", "a-site"}
}

// proves: T3, E1 (issue 12: clear packets of covered traffic from the
// network are dropped) — the table follows the policy the engine applies:
// its groups in name order, first match, deny entries accepted, permit
// entries dropped unless the engine itself passes that traffic in the
// clear (fail-open without a TEK, receive-only TEKs); fail-close without a
// TEK (the bootstrap) drops.
func TestClearInPolicy(t *testing.T) {
	now := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	m, groups := clearInKeys(now)
	rules := ClearInPolicy(m, groups, now)
	type row struct {
		Group string
		Index int
		Drop  bool
	}
	var got []row
	for _, r := range rules {
		got = append(got, row{r.Group, r.Index, r.Drop})
	}
	want := []row{
		{"a-site", 1, false}, {"a-site", 2, true},
		{"b-boot", 1, false}, {"b-boot", 2, false}, {"b-boot", 3, true},
		{"c-open", 1, false},
		{"d-ro", 1, false},
		{"e-sel", 1, true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rules %+v\nwant %+v", got, want)
	}
	// The TEK of a-site expired and nothing replaced it: fail-close still
	// drops; a fail-open group would pass.
	later := now.Add(2 * time.Hour)
	if r := ClearInPolicy(m, groups, later); !r[1].Drop {
		t.Fatalf("fail-close group after its TEK expired: %+v", r[1])
	}
	m.SetFailMode("a-site", sadb.FailOpen)
	if r := ClearInPolicy(m, groups, later); r[1].Drop {
		t.Fatalf("fail-open group after its TEK expired: %+v", r[1])
	}
	if r := ClearInPolicy(m, groups, now); !r[1].Drop {
		t.Fatalf("fail-open group with a TEK that sends: %+v", r[1])
	}
}

// proves: E1 (issue 12: clear packets of covered traffic from the network
// are dropped) — the policy becomes this nftables text (golden:
// testdata/clearin.nft): one transaction that declares the table, empties
// its chains and fills them, keeping the named counter; accept rules after
// the last drop are left out; a group name cannot break out of its
// comment. When nft and root are there, nft itself checks the text, twice
// in a row (the replacement works on an existing table).
func TestClearInRuleset(t *testing.T) {
	now := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	m, groups := clearInKeys(now)
	rules := ClearInPolicy(m, groups, now)
	rules = append(rules, ClearInRule{Group: `x" } accept; #`, Index: 1, Drop: true, Entry: sadb.PolicyEntry{Action: sadb.Protect,
		Src: netip.MustParsePrefix("10.9.0.0/16"), Dst: netip.MustParsePrefix("10.9.0.0/16")}})
	c := &ClearIn{TUN: "gvtun", Local: []netip.Prefix{netip.MustParsePrefix("10.1.1.1/24"), netip.MustParsePrefix("10.1.3.0/24")}}
	text, cut := c.Ruleset(rules)
	if cut {
		t.Fatal("truncated")
	}
	golden := filepath.Join("testdata", "clearin.nft")
	if *updateGolden {
		if err := os.WriteFile(golden, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if text != string(want) {
		t.Fatalf("ruleset differs from %s (-update rewrites it):\n%s", golden, text)
	}
	if strings.Contains(text, `x" }`) {
		t.Fatal("group name not sanitized")
	}

	// The bound: more rules than MaxClearInRules are cut.
	many := make([]ClearInRule, MaxClearInRules+5)
	for i := range many {
		many[i] = ClearInRule{Group: "g", Index: i + 1, Drop: true, Entry: sadb.PolicyEntry{Action: sadb.Protect,
			Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8")}}
	}
	if text, cut := c.Ruleset(many); !cut || strings.Count(text, " drop comment ") != MaxClearInRules {
		t.Fatalf("cut %v, %d drop rules", cut, strings.Count(text, " drop comment "))
	}

	if os.Geteuid() != 0 {
		return
	}
	testnet.RequireNft(t)
	ns := testnet.NewNetns(t, "dp-nftcheck")
	c.NFT = nsNFT(ns)
	for range 2 {
		if _, err := c.Apply(rules); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := c.Drops(); err != nil || n != 0 {
		t.Fatalf("drops %d, %v", n, err)
	}
	for range 2 {
		if err := c.Remove(); err != nil {
			t.Fatal(err)
		}
	}
}

// nsNFT runs nft in the namespace.
func nsNFT(ns *testnet.Netns) func(stdin string, args ...string) ([]byte, error) {
	return func(stdin string, args ...string) ([]byte, error) {
		cmd := ns.Command("nft", args...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return nil, &nftError{args, err, string(out)}
		}
		return out, nil
	}
}

type nftError struct {
	args []string
	err  error
	out  string
}

func (e *nftError) Error() string {
	return "nft " + strings.Join(e.args, " ") + ": " + e.err.Error() + ": " + e.out
}

// The counter is read from nft's JSON.
func TestParseNftCounter(t *testing.T) {
	b := []byte(`{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"counter": {"family": "ip", "name": "clear_in_drops", "table": "groupvpn", "handle": 4, "packets": 42, "bytes": 1234}}]}`)
	if n, err := parseNftCounter(b); err != nil || n != 42 {
		t.Fatalf("%d, %v", n, err)
	}
	for _, bad := range []string{"", "{", `{"nftables": []}`, `{"nftables": [{"counter": {"packets": -1}}]}`} {
		if _, err := parseNftCounter([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// Receive-only turned on by a rekey: the new receive-only TEK's ATD is 30 s
// away and the GM still seals with the old TEK, but a peer that reached the
// ATD first already sends in the clear: clear packets are accepted from the
// moment the receive-only TEK is held, and until it expires after
// receive-only is turned off again, whatever the ATDs.
// proves: T3 (issue 12: receive-only transitions drop no clear packet of a peer that switched first)
func TestClearInReceiveOnlyTransitions(t *testing.T) {
	now := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	sites := netip.MustParsePrefix("10.1.0.0/16")
	m := sadb.NewMemory()
	install := func(spi uint32, ro bool, from time.Time) {
		t.Helper()
		if err := m.InstallTEK(sadb.TEK{Group: "g", SPI: spi, Src: sites, Dst: sites, ReceiveOnly: ro,
			SendFrom: from, Expires: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	m.SetFailMode("g", sadb.FailClose)
	m.SetPolicy("g", []sadb.PolicyEntry{{Action: sadb.Protect, Src: sites, Dst: sites}})
	drop := func(at time.Time) bool {
		r := ClearInPolicy(m, []string{"g"}, at)
		if len(r) != 1 {
			t.Fatalf("rules %+v", r)
		}
		return r[0].Drop
	}
	install(0x100, false, now.Add(-time.Minute))
	if !drop(now) {
		t.Fatal("a sending TEK: clear packets of its traffic must be dropped")
	}
	install(0x200, true, now.Add(30*time.Second))
	if drop(now) {
		t.Error("receive-only TEK held, before its ATD: clear packets dropped")
	}
	if drop(now.Add(31 * time.Second)) {
		t.Error("receive-only TEK after its ATD: clear packets dropped")
	}
	install(0x300, false, now.Add(60*time.Second))
	if drop(now.Add(61 * time.Second)) {
		t.Error("receive-only turned off, its TEK still held: clear packets dropped")
	}
	m.DeleteTEK("g", 0x200)
	if !drop(now.Add(61 * time.Second)) {
		t.Error("receive-only TEK gone: clear packets accepted")
	}
}
