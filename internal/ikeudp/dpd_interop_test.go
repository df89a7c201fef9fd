package ikeudp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

// proves: S7 (issue 14 item 2: keepalive, interop) — strongSwan's charon
// answers the R-U-THEREs our dead peer detection timer sends (a keepalive
// of 1 s): every probe is acknowledged with its sequence number, none is
// ignored as unexpected, and the SA stays up; once charon's link goes
// down, the SA fails with ErrDeadPeer within SECONDS + 5*RETRY.
func TestDPDTimerWithCharon(t *testing.T) {
	testnet.RequireCharon(t)
	ns := testnet.NewNetns(t, "gvi-dpd")
	ours, theirs := netip.MustParseAddr("10.232.8.1"), netip.MustParseAddr("10.232.8.2")
	testnet.Veth(t, "gvi8", ns, netip.PrefixFrom(ours, 24), netip.PrefixFrom(theirs, 24))
	ch := testnet.StartCharon(t, ns, testnet.CharonConfig{})
	const psk = "groupvpn interop pre-shared key"
	ch.Load(t, fmt.Sprintf(`connections {
	gv {
		version = 1
		aggressive = no
		local_addrs = %s
		remote_addrs = %s
		remote_port = 500
		proposals = aes128-sha256-modp2048
		local {
			auth = psk
			id = %[1]s
		}
		remote {
			auth = psk
			id = %[2]s
		}
	}
}
secrets {
	ike-gv {
		secret = %[3]q
		id-1 = %[1]s
		id-2 = %[2]s
	}
}
`, theirs, ours, psk), nil)

	cfg := &ike.Config{Suites: []ike.Suite{{KeyBits: 128, Hash: ike.SHA256, Group: 14, Auth: ike.AuthPSK}},
		Creds: ike.Credentials{PSK: func(a netip.Addr) ([]byte, bool) { return []byte(psk), a == theirs }},
		DPD:   ike.DPD{Interval: time.Second, Retry: time.Second}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := Listen(netip.AddrPortFrom(ours, 500), cfg, ike.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Run(ctx)
	if err := srv.Initiate(ctx, netip.AddrPortFrom(theirs, 500)); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-srv.Events():
		if _, ok := ev.Event.(ike.Established); !ok {
			t.Fatalf("our side: %#v\ncharon log:\n%s", ev.Event, tailLines(ch.Log(), 60))
		}
	case <-ctx.Done():
		t.Fatalf("not established\ncharon log:\n%s", tailLines(ch.Log(), 60))
	}
	time.Sleep(5500 * time.Millisecond)
	var st ike.Stats
	var up int
	srv.Do(ctx, func(ep *ike.Endpoint, _ time.Time) ike.Output {
		st, up = ep.Stats, len(ep.SAs())
		return ike.Output{}
	})
	if st.DPDSent < 4 || st.DPDAcked != st.DPDSent && st.DPDAcked != st.DPDSent-1 || st.DPDAckUnexpected != 0 || st.DPDDead != 0 || up != 1 {
		t.Fatalf("after 5.5 s of keepalive 1 s: %+v, %d SAs\ncharon log:\n%s", st, up, tailLines(ch.Log(), 40))
	}
	t.Logf("R-U-THERE sent %d, acknowledged %d", st.DPDSent, st.DPDAcked)

	if out, err := exec.Command("ip", "-n", ns.Name, "link", "set", "gvi8", "down").CombinedOutput(); err != nil {
		t.Fatalf("ip link set down: %v %s", err, out)
	}
	down := time.Now()
	select {
	case ev := <-srv.Events():
		f, ok := ev.Event.(ike.Failed)
		if !ok || !errors.Is(f.Err, ike.ErrDeadPeer) {
			t.Fatalf("after charon's link went down: %#v", ev.Event)
		}
		if took := time.Since(down); took > 6*time.Second+500*time.Millisecond {
			t.Fatalf("declared dead %v after the link went down, want at most 1 s + 5 x 1 s", took)
		} else {
			t.Logf("declared dead %v after charon's link went down", took.Round(time.Millisecond))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("charon's link is down and the SA is not declared dead after 10 s")
	}
}
