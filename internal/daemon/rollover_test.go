package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/daemon"
	"github.com/groupvpn/groupvpn/internal/keystore"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/show"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

// proves: T1 (issue 14 item 2: the rekey key can be replaced on a running
// KS without members rejecting rekeys) — a KS whose rekey key comes from
// the key store, a GM registered with it over loopback UDP; the key is
// replaced on the KS's control socket (crypto key generate ... answered
// yes), the configuration reloaded, and crypto gdoi ks rekey sent: the
// GM's counters (show crypto gdoi gm | json, on its control socket) show
// the rekey received and none rejected, and it now holds the new public
// key; a second rekey, signed with the new key, is received too.
func TestKeyStoreReplaceKeyRekeyAccepted(t *testing.T) {
	dir, err := os.MkdirTemp("", "ksroll") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	st := keystore.Open(filepath.Join(dir, "keys"))
	off := serveCtl(t, daemon.KeyServer(st, nil), filepath.Join(dir, "key.sock"))
	mustOK(t, off, "crypto key generate rsa general-keys label REKEY modulus 2048")

	file := filepath.Join(dir, "ks.conf")
	os.WriteFile(file, []byte(strings.ReplaceAll(storeKS, "127.0.41.1", "127.0.46.1")), 0o600)
	cfg, err := policy.LoadWith(file, policy.Options{KeyStore: st})
	if err != nil {
		t.Fatal(err)
	}
	const port = 23863
	var logs testnet.Buffer
	ks, err := daemon.New(cfg, []netip.AddrPort{netip.MustParseAddrPort(fmt.Sprintf("127.0.46.1:%d", port))}, port, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ks.ServeKeyStore(st)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	serve := func(d *daemon.Daemon, sock string) *ctl.Client {
		ln, err := ctl.Listen(sock)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); d.Serve(ctx, ln) }()
		c, err := ctl.Dial(sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := serve(ks, filepath.Join(dir, "ks.sock"))
	oldPub, _ := exported(t, mustOK(t, c, "crypto key export rsa REKEY pem terminal").Text)

	gcfg, err := policy.Parse("gm.conf", []byte(strings.ReplaceAll(storeGM, "127.0.41.1", "127.0.46.1")))
	if err != nil {
		t.Fatal(err)
	}
	db := sadb.NewMemory()
	gm, err := daemon.New(gcfg, []netip.AddrPort{netip.MustParseAddrPort(fmt.Sprintf("127.0.46.2:%d", port))}, port, nil, func(o *node.Options) {
		o.Dataplane = db
		o.ListenPacket = func(a netip.AddrPort) (node.PacketConn, error) {
			return net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	gc := serve(gm, filepath.Join(dir, "gm.sock"))
	waitKEK := func(what string, ok func(sadb.KEK) bool) sadb.KEK {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if ks := db.KEKs(); len(ks) == 1 && ok(ks[0]) {
				return ks[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the GM holds %+v\n%s", what, db.KEKs(), logs.String())
			}
		}
	}
	kek0 := waitKEK("registration", func(k sadb.KEK) bool { return bytes.Equal(k.SigKey, oldPub) })

	// The key is replaced on the running KS (asked first, as IOS does),
	// and the configuration reloaded: the KS now has the new key.
	out := run(t, c, "crypto key generate rsa general-keys label REKEY modulus 2048", "yes")
	if !out.OK || !strings.Contains(out.Text, "[OK]") {
		t.Fatalf("replacing the key: %+v", out)
	}
	if strings.Contains(out.Text, "reject") {
		t.Errorf("the replace still warns that members reject rekeys:\n%s", out.Text)
	}
	newPub, _ := exported(t, mustOK(t, c, "crypto key export rsa REKEY pem terminal").Text)
	if bytes.Equal(newPub, oldPub) {
		t.Fatal("the key was not replaced")
	}
	if err := ks.Reload(); err != nil {
		t.Fatal(err)
	}

	counters := func() show.GMGroupJSON {
		t.Helper()
		var v show.GMJSON
		if err := json.Unmarshal(mustOK(t, gc, "show crypto gdoi gm | json").Data, &v); err != nil {
			t.Fatal(err)
		}
		if len(v.Groups) != 1 {
			t.Fatalf("show crypto gdoi gm: %+v", v)
		}
		return v.Groups[0]
	}
	rekeyed := func(n int) show.GMGroupJSON {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			g := counters()
			if g.RekeysReceived >= n || g.RekeysRejected > 0 {
				return g
			}
			if time.Now().After(deadline) {
				t.Fatalf("no rekey %d reached the GM: %+v\n%s", n, g, logs.String())
			}
		}
	}
	mustOK(t, c, "crypto gdoi ks rekey")
	if g := rekeyed(1); g.RekeysReceived != 1 || g.RekeysRejected != 0 {
		t.Fatalf("the rekey after the key was replaced: received %d, rejected %d\n%s", g.RekeysReceived, g.RekeysRejected, logs.String())
	}
	kek1 := waitKEK("the announcement", func(k sadb.KEK) bool { return bytes.Equal(k.SigKey, newPub) })
	if kek1.SPI == kek0.SPI {
		t.Fatal("the announcement brought no new KEK")
	}
	mustOK(t, c, "crypto gdoi ks rekey")
	if g := rekeyed(2); g.RekeysReceived != 2 || g.RekeysRejected != 0 || g.RegistrationsSucceeded != 1 {
		t.Fatalf("the rekey signed with the new key: received %d, rejected %d, registrations %d", g.RekeysReceived, g.RekeysRejected, g.RegistrationsSucceeded)
	}
}
