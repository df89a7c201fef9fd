package lab

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/testnet"
	"github.com/groupvpn/groupvpn/isakmp"
)

// header is a bare ISAKMP header with the given cookies and exchange.
func header(icky, rcky byte, exch isakmp.ExchangeType, np isakmp.PayloadType) []byte {
	b := make([]byte, isakmp.HeaderLen)
	for i := 0; i < 8; i++ {
		b[i], b[8+i] = icky, rcky
	}
	b[16], b[17], b[18] = byte(np), 0x10, byte(exch)
	binary.BigEndian.PutUint32(b[24:], isakmp.HeaderLen)
	return b
}

// counters runs a `... | json` command and returns the named section.
func counters(t *testing.T, ctx context.Context, srv *ctl.Server, cmd, section string) map[string]uint64 {
	t.Helper()
	r := srv.Exec(ctx, cmd+" | json")
	if !r.OK {
		t.Fatalf("%s: %s", cmd, r.Error)
	}
	var v struct {
		Counters map[string]json.RawMessage `json:"counters"`
	}
	if err := json.Unmarshal([]byte(r.Text), &v); err != nil {
		t.Fatalf("%s | json: %v\n%s", cmd, err, r.Text)
	}
	var out map[string]uint64
	if err := json.Unmarshal(v.Counters[section], &out); err != nil {
		t.Fatalf("%s | json: section %q: %v\n%s", cmd, section, err, r.Text)
	}
	return out
}

func names(cs []ike.Counter) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name+" ")
	}
	return out
}

// proves: S5 (issue 11 item 8) — every drop reason is visible through the
// control socket (every ike.Stats counter by name, whatever ike adds): `show crypto isakmp statistics`, `show crypto gdoi gm
// counters` and `show crypto gdoi ks counters`, as text with each
// counter's stable name and as `| json` (snake_case); hostile datagrams of
// each kind raise their counter (malformed, unknown cookies, a rekey under
// an unknown KEK at a GM, rekey acknowledgements that do not parse or
// name no rekey in flight at the KS).
func TestDropCountersThroughTheCLI(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := Start(ctx, Options{Members: 1, Port: 23848, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Wait(ctx, &strings.Builder{}, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	gm := l.GMs[0]
	for _, c := range []struct {
		srv  *ctl.Server
		cmd  string
		want []string
	}{
		{l.KS.Ctl, "show crypto isakmp statistics", append(names(ike.Stats{}.Counters()), "phase2_other_exchange", "closed_socket")},
		{l.KS.Ctl, "show crypto gdoi ks counters", []string{"pulls_refused", "acks_received", "acks_malformed", "acks_unknown", "acks_bad", "Group LAB", "rekeys_sent"}},
		{gm.Ctl, "show crypto gdoi gm counters", []string{"registrations", "rekeys_replayed", "rekeys_duplicate", "rekeys_rejected", "rekeys_unknown_kek", "Group LAB"}},
	} {
		r := c.srv.Exec(ctx, c.cmd)
		if !r.OK {
			t.Fatalf("%s: %s", c.cmd, r.Error)
		}
		for _, w := range c.want {
			if !strings.Contains(r.Text, w) {
				t.Errorf("%s lacks %q:\n%s", c.cmd, w, r.Text)
			}
		}
	}
	before := counters(t, ctx, l.KS.Ctl, "show crypto isakmp statistics", "isakmp")
	ksBefore := counters(t, ctx, l.KS.Ctl, "show crypto gdoi ks counters", "ks")
	gmBefore := counters(t, ctx, gm.Ctl, "show crypto gdoi gm counters", "gm")

	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.9.9:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ks := netip.AddrPortFrom(KSAddr, l.Port)
	gmAP := netip.AddrPortFrom(GMAddr(0), l.Port)
	send := func(to netip.AddrPort, b []byte) { c.WriteToUDPAddrPort(b, to) }
	send(ks, []byte("not isakmp"))                                                    // malformed
	send(ks, header(1, 2, isakmp.ExchangeIdentityProt, isakmp.PayloadSA))             // unknown cookies
	send(ks, append(header(3, 4, isakmp.ExchangePushAck, isakmp.PayloadHash), 0, 0))  // an ACK that does not parse
	send(ks, header(5, 6, isakmp.ExchangePushAck, 0))                                 // an ACK for no rekey in flight
	send(gmAP, append(header(7, 8, isakmp.ExchangePush, isakmp.PayloadSEQ), 1, 2, 3)) // a rekey under no KEK held

	deadline := time.Now().Add(10 * time.Second)
	for {
		after := counters(t, ctx, l.KS.Ctl, "show crypto isakmp statistics", "isakmp")
		ksAfter := counters(t, ctx, l.KS.Ctl, "show crypto gdoi ks counters", "ks")
		gmAfter := counters(t, ctx, gm.Ctl, "show crypto gdoi gm counters", "gm")
		ok := after["malformed"] > before["malformed"] && after["unknown_sa"] > before["unknown_sa"] &&
			ksAfter["acks_malformed"] > ksBefore["acks_malformed"] && ksAfter["acks_unknown"] > ksBefore["acks_unknown"] &&
			gmAfter["rekeys_unknown_kek"] > gmBefore["rekeys_unknown_kek"] && gmAfter["registrations"] == 1
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters did not rise:\nisakmp %v -> %v\nks %v -> %v\ngm %v -> %v", before, after, ksBefore, ksAfter, gmBefore, gmAfter)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// proves: S5, S6 (issue 11 item 8) — the daemon's own drops are in `show
// crypto isakmp statistics` too, each section under its `| json` key: a
// request line that is not JSON, one over the size limit and a connection
// over the limit raise the control socket's counters (through the real
// socket), and forged rekeys at a GM past the log rate limiter's burst
// raise log_records_suppressed (the rejections themselves stay counted in
// rekeys_rejected).
func TestDaemonCountersThroughTheCLI(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &testnet.Buffer{} // a log that is written: the limiter sees only enabled records
	l, err := Start(ctx, Options{Members: 1, Port: 23858, Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Wait(ctx, &strings.Builder{}, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	gm := l.GMs[0]
	r := l.KS.Ctl.Exec(ctx, "show crypto isakmp statistics")
	for _, w := range []string{"\nControl socket\n", "connections_refused", "requests_malformed", "\nLog rate limiter", "log_records_suppressed"} {
		if !strings.Contains(r.Text, w) {
			t.Errorf("show crypto isakmp statistics lacks %q:\n%s", w, r.Text)
		}
	}
	if strings.Contains(r.Text, "Broker") || strings.Contains(r.Text, "State store") {
		t.Errorf("a daemon without iked or a store shows their sections:\n%s", r.Text)
	}
	ctlBefore := counters(t, ctx, l.KS.Ctl, "show crypto isakmp statistics", "control_socket")
	logBefore := counters(t, ctx, gm.Ctl, "show crypto isakmp statistics", "log_rate_limiter")
	gmBefore := counters(t, ctx, gm.Ctl, "show crypto gdoi gm counters", "gm")

	// The control socket: one connection held, a junk line, a line over
	// MaxRequest, and one connection more than the limit.
	l.KS.Ctl.SetLimits(ctl.Limits{MaxConns: 1})
	defer l.KS.Ctl.SetLimits(ctl.Limits{})
	held, err := net.Dial("unix", l.Sockets["ks"])
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	rd := bufio.NewReader(held)
	held.SetDeadline(time.Now().Add(10 * time.Second))
	for _, line := range []string{"not json\n", strings.Repeat("x", ctl.MaxRequest+1) + "\n"} {
		if _, err := held.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
		if _, err := rd.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	over, err := net.Dial("unix", l.Sockets["ks"])
	if err != nil {
		t.Fatal(err)
	}
	over.SetDeadline(time.Now().Add(10 * time.Second))
	if answer, _ := bufio.NewReader(over).ReadString('\n'); !strings.Contains(answer, "too many control connections") {
		t.Errorf("connection over the limit answered %q", answer)
	}
	over.Close()

	// Forged rekeys under the GM's KEK: each is rejected and logged
	// (GM_REKEY_REJECTED) until the limiter's burst is spent.
	var kekSPI [16]byte
	gm.Node.Do(ctx, func() {
		for _, k := range gm.Node.Snapshot().KEKs {
			kekSPI = k.SPI
		}
	})
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.9.9:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	forged := header(0, 0, isakmp.ExchangePush, isakmp.PayloadSEQ)
	copy(forged[0:16], kekSPI[:])
	forged[19] = 0x01 // encrypted
	forged = append(forged, make([]byte, 64)...)
	binary.BigEndian.PutUint32(forged[24:], uint32(len(forged)))
	for range 40 {
		c.WriteToUDPAddrPort(forged, netip.AddrPortFrom(GMAddr(0), l.Port))
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		ctlAfter := counters(t, ctx, l.KS.Ctl, "show crypto isakmp statistics", "control_socket")
		logAfter := counters(t, ctx, gm.Ctl, "show crypto isakmp statistics", "log_rate_limiter")
		gmAfter := counters(t, ctx, gm.Ctl, "show crypto gdoi gm counters", "gm")
		ok := ctlAfter["requests_malformed"] > ctlBefore["requests_malformed"] &&
			ctlAfter["requests_oversize"] > ctlBefore["requests_oversize"] &&
			ctlAfter["connections_refused"] > ctlBefore["connections_refused"] &&
			gmAfter["rekeys_rejected"] >= gmBefore["rekeys_rejected"]+40 &&
			logAfter["log_records_suppressed"] >= logBefore["log_records_suppressed"]+20
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters did not rise:\ncontrol socket %v -> %v\nlog %v -> %v\ngm %v -> %v", ctlBefore, ctlAfter, logBefore, logAfter, gmBefore, gmAfter)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(logs.String(), "GM_REKEY_REJECTED"); n > 20 {
		t.Errorf("%d GM_REKEY_REJECTED lines for 40 forged rekeys: not rate-limited", n)
	}
}
