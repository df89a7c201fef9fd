package tmd

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/sadb"
)

// testPolicy is an ordered policy as gm builds it: bypass GDOI, encrypt
// 10/8 with the TEK spi, pass everything else.
func testPolicy(spi uint32) []sadb.PolicyEntry {
	any4, ten := netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("10.0.0.0/8")
	return []sadb.PolicyEntry{
		{Action: sadb.Bypass, IPProto: 17, Src: any4, Dst: any4, SrcPort: 848, DstPort: 848},
		{Action: sadb.Protect, Src: ten, Dst: ten, SPI: spi},
		{Action: sadb.Bypass, Src: any4, Dst: any4},
	}
}

// liveTEK is a TEK that does not expire during a test.
func liveTEK(group string, spi uint32) sadb.TEK {
	t := fullTEK(group, spi)
	t.Expires, t.Deactivate = time.Now().Add(time.Hour), time.Time{}
	return t
}

// wantPolicy fails unless the server's database and its backend hold p
// for group (nil: none), the backend with fail mode f.
func wantPolicy(t *testing.T, r *running, be *MemoryBackend, group string, p []sadb.PolicyEntry, f sadb.FailMode) {
	t.Helper()
	if got := r.srv.DB().Policy(group); !reflect.DeepEqual(got, p) {
		t.Fatalf("tmd's database holds %+v, want %+v", got, p)
	}
	if got, gf := be.Policy(group), be.FailMode(group); !reflect.DeepEqual(got, p) || gf != f {
		t.Fatalf("backend holds %+v (%v), want %+v (%v)", got, gf, p, f)
	}
}

// TestPolicyReachesTmd: the policy the node hands its SA database
// (gm.Install's PolicyStore) travels through the real socket to tmd's
// database and its backend with the group's fail mode, is listed back by
// Fetch and counted in status, is replaced whole on a change, re-installed
// on a fail-mode change, and removed by an empty policy; the backend holds
// the TEK and never a KEK.
//
// proves: D1, T3 (issue 12: tmd carries the group's ordered policy)
func TestPolicyReachesTmd(t *testing.T) {
	path := sockPath(t)
	be := NewMemoryBackend()
	r := startWith(t, path, Options{Backend: be})
	c := dial(t, path, "isakmpd")
	var ps sadb.PolicyStore = c // what gm.Install looks for
	kek := fullKEK("g")
	kek.Expires = time.Now().Add(time.Hour)
	if err := c.InstallTEK(liveTEK("g", 0x1234)); err != nil {
		t.Fatal(err)
	}
	if err := c.InstallKEK(kek); err != nil {
		t.Fatal(err)
	}
	c.SetFailMode("g", sadb.FailClose)
	p := testPolicy(0x1234)
	ps.SetPolicy("g", p)
	wantPolicy(t, r, be, "g", p, sadb.FailClose)
	if got := c.Policy("g"); !reflect.DeepEqual(got, p) {
		t.Fatalf("client mirror %+v", got)
	}
	if got := be.TEKs(); len(got) != 1 || got[0].SPI != 0x1234 {
		t.Fatalf("backend TEKs %+v", got)
	}
	if len(r.srv.DB().KEKs()) != 1 {
		t.Fatal("tmd's database lost the KEK")
	}

	// A second client (a restarted isakmpd, show) loads it from tmd.
	c2 := dial(t, path, "show")
	if _, _, err := c2.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := c2.Policies(); !reflect.DeepEqual(got, map[string][]sadb.PolicyEntry{"g": p}) {
		t.Fatalf("fetched policies %+v", got)
	}
	st, err := c2.Status(context.Background())
	if err != nil || st.Policies != 1 {
		t.Fatalf("status %+v, %v", st, err)
	}

	// Replaced whole on change (a rekey's ACL).
	p2 := testPolicy(0x5678)[1:]
	p2[0].Dst = netip.MustParsePrefix("10.9.0.0/16")
	ps.SetPolicy("g", p2)
	wantPolicy(t, r, be, "g", p2, sadb.FailClose)
	c.SetFailMode("g", sadb.FailOpen)
	wantPolicy(t, r, be, "g", p2, sadb.FailOpen)

	ps.SetPolicy("g", nil)
	wantPolicy(t, r, be, "g", nil, 0)
	if c.Policy("g") != nil {
		t.Fatal("mirror kept the removed policy")
	}
	if st := r.srv.Status(); st.Policies != 0 {
		t.Fatalf("status counts %d policies", st.Policies)
	}
}

// TestPolicyWrittenBackAfterRestart: tmd restarted empty gets the policy
// back from the client's mirror (with the TEK it names and the fail mode),
// from the keepalive, with no change in the daemon.
//
// proves: D1 (issue 12: the policy survives a tmd restart via write-back)
func TestPolicyWrittenBackAfterRestart(t *testing.T) {
	path := sockPath(t)
	r1 := start(t, path, nil)
	c, err := dialKeepalive(context.Background(), path, "isakmpd", nil, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.InstallTEK(liveTEK("g", 0x1234)); err != nil {
		t.Fatal(err)
	}
	c.SetFailMode("g", sadb.FailClose)
	p := testPolicy(0x1234)
	c.SetPolicy("g", p)
	if err := r1.stop(); err != nil {
		t.Fatal(err)
	}
	be := NewMemoryBackend()
	var logs logBuf
	r2 := startWith(t, path, Options{Backend: be, Logger: logs.logger()})
	// Logged once the policy is in the database: the keepalive's push.
	if !logs.WaitFor(5*time.Second, func(l string) bool { return strings.Contains(l, `msg="policy installed" client=isakmpd group=g`) }) {
		t.Fatalf("the policy was never written back to the restarted tmd:\n%s", logs.String())
	}
	wantPolicy(t, r2, be, "g", p, sadb.FailClose)
	if got := be.TEKs(); len(got) != 1 || got[0].SPI != 0x1234 {
		t.Fatalf("backend TEKs after write-back %+v", got)
	}
}

// TestMalformedPolicyRefused: a set-policy whose policy is malformed is
// answered with an error, counted in status's malformed, and changes
// neither tmd's database nor its backend; the connection goes on.
//
// proves: D1 (issue 12: a malformed policy request is refused and counted)
func TestMalformedPolicyRefused(t *testing.T) {
	path := sockPath(t)
	be := NewMemoryBackend()
	r := startWith(t, path, Options{Backend: be})
	raw := rawDial(t, path)
	if resp := raw.send(fmt.Sprintf(`{"hello":{"api":%d,"client":"isakmpd","pid":1}}`, APIVersion)); !resp.OK {
		t.Fatalf("hello: %+v", resp)
	}
	good := `{"Action":"permit","Src":"10.0.0.0/8","Dst":"10.0.0.0/8","SPI":7}`
	many := strings.Repeat(good+",", MaxPolicyEntries) + good
	for _, c := range []struct{ line, why string }{
		{`{"op":"set-policy","policy":[` + good + `]}`, "no group"},
		{`{"op":"set-policy","group":"g","policy":[{"Action":"allow","Src":"10.0.0.0/8","Dst":"10.0.0.0/8"}]}`, "allow"},
		{`{"op":"set-policy","group":"g","policy":[{"Action":3,"Src":"10.0.0.0/8","Dst":"10.0.0.0/8"}]}`, "number"},
		{`{"op":"set-policy","group":"g","policy":[{"Src":"10.0.0.0/8","Dst":"10.0.0.0/8","SPI":7}]}`, "action(0)"},
		{`{"op":"set-policy","group":"g","policy":[{"Action":"deny","Src":"10.0.0.0/8","Dst":"10.0.0.0/8","SPI":7}]}`, "deny with an SPI"},
		{`{"op":"set-policy","group":"g","policy":[{"Action":"deny","Dst":"10.0.0.0/8"}]}`, "no source or destination"},
		{`{"op":"set-policy","group":"g","policy":[{"Action":"deny","Src":"10.0.0.0/33","Dst":"10.0.0.0/8"}]}`, "10.0.0.0/33"},
		{`{"op":"set-policy","group":"g","policy":[{"Action":"deny","Src":"10.0.0.0/8","Dst":"2001:db8::/32"}]}`, "different families"},
		{`{"op":"set-policy","group":"g","policy":[` + many + `]}`, "1025 entries (limit 1024)"},
		{`{"op":"set-policy","group":"g","policy":{"Action":"deny"}}`, "malformed request"},
	} {
		resp := raw.send(c.line)
		if resp.OK || !strings.Contains(resp.Error, "malformed request") || !strings.Contains(resp.Error, c.why) {
			t.Errorf("%.100s: answered %+v, want a malformed-request error naming %q", c.line, resp, c.why)
		}
	}
	if st := r.srv.Status(); st.Malformed != 10 || st.Policies != 0 {
		t.Fatalf("status after 10 malformed policies: malformed %d, policies %d", st.Malformed, st.Policies)
	}
	if be.Policy("g") != nil {
		t.Fatal("a malformed policy reached the backend")
	}
	var req Request
	if err := json.Unmarshal([]byte(`{"op":"set-policy","group":"g","policy":[`+good+`]}`), &req); err != nil {
		t.Fatal(err)
	}
	if resp := raw.send(`{"op":"set-policy","group":"g","policy":[` + good + `]}`); !resp.OK {
		t.Fatalf("a good policy after the malformed ones: %+v", resp)
	}
	wantPolicy(t, r, be, "g", req.Policy, sadb.FailOpen)
}

// keys is internal/dataplane's Keys, what the userspace engine reads.
type keys interface {
	TEKs() []sadb.TEK
	Policy(group string) []sadb.PolicyEntry
	FailMode(group string) sadb.FailMode
}

var _ keys = (*MemoryBackend)(nil)

// TestMemoryBackendNotifies: every change tmd hands its backend (TEK add,
// update, delete by request or expiry, policy install and removal)
// notifies the data plane reading it, and a refused one does not.
//
// proves: D1 (issue 12: the data plane learns every SA and policy change
// from tmd's backend)
func TestMemoryBackendNotifies(t *testing.T) {
	path := sockPath(t)
	be := NewMemoryBackend()
	changes := make(chan struct{}, 64)
	be.Notify(func() { changes <- struct{}{} })
	r := startWith(t, path, Options{Backend: be})
	c := dial(t, path, "isakmpd")
	n := func() int {
		k := 0
		for {
			select {
			case <-changes:
				k++
			default:
				return k
			}
		}
	}
	tek := liveTEK("g", 0x1234)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.InstallTEK(tek)) // add
	must(c.InstallTEK(tek)) // update
	c.SetPolicy("g", testPolicy(0x1234))
	c.SetFailMode("g", sadb.FailClose) // re-installs the policy
	c.SetFailMode("g", sadb.FailClose) // no change
	c.SetPolicy("g", nil)
	must(c.DeleteTEK("g", 0x1234))
	if got := n(); got != 6 {
		t.Fatalf("%d notifications, want 6", got)
	}
	if err := c.DeleteTEK("g", 0x1234); err == nil || n() != 0 {
		t.Fatal("deleting an absent TEK notified or succeeded")
	}
	short := liveTEK("g", 0x99)
	short.Expires = time.Now().Add(time.Minute)
	must(c.InstallTEK(short))
	r.srv.Sweep(time.Now().Add(2 * time.Minute))
	if got := n(); got != 2 || len(be.TEKs()) != 0 {
		t.Fatalf("expiry: %d notifications, backend holds %+v", got, be.TEKs())
	}
}
