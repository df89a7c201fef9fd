package daemon_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
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
	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/keystore"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

// storeKS signs rekeys with key REKEY, named by no crypto key import
// line: it comes from the key store.
const storeKS = `hostname ks
crypto isakmp policy 10
 encryption aes 128
 hash sha256
 authentication pre-share
 group 19
crypto isakmp key store-secret address 127.0.0.0 255.0.0.0
ip access-list extended traffic
 permit ip 10.61.0.0 0.0.255.255 10.61.0.0 0.0.255.255
crypto ipsec transform-set ts esp-gcm 128
crypto ipsec profile p
 set transform-set ts
crypto gdoi group STORE
 identity number 4343
 server local
  rekey authentication mypubkey rsa REKEY
  rekey transport unicast
  rekey retransmit 10 number 2
  address ipv4 127.0.41.1
  sa ipsec 1
   profile p
   match address ipv4 traffic
end
`

const storeGM = `hostname gm
crypto isakmp policy 10
 encryption aes 128
 hash sha256
 authentication pre-share
 group 19
crypto isakmp key store-secret address 127.0.41.1
crypto gdoi group STORE
 identity number 4343
 server address ipv4 127.0.41.1
crypto map M 10 gdoi
 set group STORE
interface lo
 crypto map M
end
`

func mustGen(t *testing.T, typ string, bits int) crypto.Signer {
	t.Helper()
	k, err := keystore.Generate(typ, bits, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// serveCtl serves srv on a real unix socket in dir and returns a client.
func serveCtl(t *testing.T, srv *ctl.Server, sock string) *ctl.Client {
	t.Helper()
	ln, err := ctl.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeListener(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	c, err := ctl.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// run runs a command and answers its prompts in order.
func run(t *testing.T, c *ctl.Client, cmd string, answers ...string) *ctl.WireResponse {
	t.Helper()
	ctx := context.Background()
	r, err := c.Run(ctx, cmd)
	for err == nil && r.Token != "" && len(answers) > 0 {
		r, err = c.Do(ctx, &ctl.WireRequest{V: ctl.Version, Cmd: cmd, Token: r.Token, Answer: answers[0]})
		answers = answers[1:]
	}
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return r
}

func mustOK(t *testing.T, c *ctl.Client, cmd string, answers ...string) *ctl.WireResponse {
	t.Helper()
	r := run(t, c, cmd, answers...)
	if !r.OK {
		t.Fatalf("%s: %+v", cmd, r)
	}
	return r
}

// shownKeys is show crypto key mypubkey's data.
func shownKeys(t *testing.T, c *ctl.Client, cmd string) []daemon.KeyInfo {
	t.Helper()
	r := mustOK(t, c, cmd)
	var d struct{ Keys []daemon.KeyInfo }
	if err := json.Unmarshal(r.Data, &d); err != nil {
		t.Fatal(err)
	}
	return d.Keys
}

// exported splits crypto key export's PEM: the public key DER, the
// private key PEM.
func exported(t *testing.T, text string) ([]byte, string) {
	t.Helper()
	rest := []byte(text[strings.Index(text, "-----BEGIN"):])
	pub, rest := pem.Decode(rest)
	if pub == nil || pub.Type != "PUBLIC KEY" {
		t.Fatalf("export: no PUBLIC KEY first:\n%s", text)
	}
	if priv, _ := pem.Decode(rest); priv == nil || priv.Type != "PRIVATE KEY" {
		t.Fatalf("export: no PRIVATE KEY after it:\n%s", text)
	}
	return pub.Bytes, string(rest)
}

// teeConn is a GM's UDP socket that hands a copy of every GDOI push
// datagram it receives to the test.
type teeConn struct {
	*net.UDPConn
	pushes chan []byte
}

func (c *teeConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, from, err := c.UDPConn.ReadFromUDPAddrPort(b)
	if err == nil && n > 28 && b[18] == 33 { // ISAKMP exchange type: GROUPKEY-PUSH
		select {
		case c.pushes <- bytes.Clone(b[:n]):
		default:
		}
	}
	return n, from, err
}

// proves: O1 (issue 14 item 2: the key a KS configuration names is
// generated into the key store on a control socket before isakmpd runs
// (groupvpn key); show crypto key mypubkey prints it in IOS's layout;
// the configuration resolves rekey authentication mypubkey against the
// store; the KS signs its rekeys with that key: a real rekey datagram
// received by a GM verifies with the public key crypto key export gives)
func TestKeyStoreGenerateShowConfigRekey(t *testing.T) {
	dir, err := os.MkdirTemp("", "ksgen") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	st := keystore.Open(filepath.Join(dir, "keys"))

	// Before the daemon: the KS configuration is refused without its key.
	file := filepath.Join(dir, "ks.conf")
	os.WriteFile(file, []byte(storeKS), 0o600)
	if _, err := policy.LoadWith(file, policy.Options{KeyStore: st}); err == nil || !strings.Contains(err.Error(), `key "REKEY" is not defined`) || !strings.Contains(err.Error(), st.Dir()) {
		t.Fatalf("a KS without its rekey key: %v", err)
	}
	// groupvpn key: the key store's commands on a socket of their own.
	off := serveCtl(t, daemon.KeyServer(st, nil), filepath.Join(dir, "key.sock"))
	out := mustOK(t, off, "crypto key generate rsa general-keys label REKEY modulus 2048").Text
	for _, want := range []string{"The name for the keys will be: REKEY", "% The key modulus size is 2048 bits", "[OK]"} {
		if !strings.Contains(out, want) {
			t.Errorf("generate output lacks %q:\n%s", want, out)
		}
	}

	cfg, err := policy.LoadWith(file, policy.Options{KeyStore: st})
	if err != nil {
		t.Fatal(err)
	}
	if k := cfg.KSGroups()[0].Server.RekeyKey; k == nil || k.Store != st.Dir() {
		t.Fatalf("rekey key %+v: want the stored one", k)
	}
	const port = 23861
	var logs testnet.Buffer
	ks, err := daemon.New(cfg, []netip.AddrPort{netip.MustParseAddrPort(fmt.Sprintf("127.0.41.1:%d", port))}, port, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ks.ServeKeyStore(st)
	sock := filepath.Join(dir, "ks.sock")
	ln, err := ctl.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Add(1)
	go func() { defer wg.Done(); ks.Serve(ctx, ln) }()
	c, err := ctl.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	// show crypto key mypubkey rsa, IOS's layout.
	show := mustOK(t, c, "show crypto key mypubkey rsa").Text
	for _, want := range []string{"% Key pair was generated at: ", "\nKey name: REKEY\n", "\nKey type: RSA KEYS 2048 bits\n", "\n Storage Device: " + st.Dir() + "\n",
		"\n Usage: General Purpose Key\n", "\n Key Data:\n  30820122 300D0609 2A864886 F70D0101 01050003 82010F00 3082010A 02820101\n"} {
		if !strings.Contains(show, want) {
			t.Errorf("show crypto key mypubkey rsa lacks %q:\n%s", want, show)
		}
	}
	keys := shownKeys(t, c, "sh cry key myp rsa REKEY | json")
	pubDER, _ := exported(t, mustOK(t, c, "crypto key export rsa REKEY pem terminal").Text)
	if len(keys) != 1 || keys[0].PublicKey != hex.EncodeToString(pubDER) {
		t.Fatalf("show's key %+v is not the exported public key", keys)
	}
	pub, err := x509.ParsePKIXPublicKey(pubDER)
	if err != nil {
		t.Fatal(err)
	}

	// A GM registers; its socket copies the pushes it receives.
	gcfg, err := policy.Parse("gm.conf", []byte(storeGM))
	if err != nil {
		t.Fatal(err)
	}
	db := sadb.NewMemory()
	tee := &teeConn{pushes: make(chan []byte, 16)}
	gm, err := daemon.New(gcfg, []netip.AddrPort{netip.MustParseAddrPort(fmt.Sprintf("127.0.41.2:%d", port))}, port, nil, func(o *node.Options) {
		o.Dataplane = db
		o.ListenPacket = func(a netip.AddrPort) (node.PacketConn, error) {
			u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
			tee.UDPConn = u
			return tee, err
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); gm.Run(ctx, "") }()
	var kek sadb.KEK
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ks := db.KEKs(); len(ks) == 1 {
			kek = ks[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the GM never registered")
		}
	}
	if !bytes.Equal(kek.SigKey, pubDER) {
		t.Fatal("the KS gave the GM another public rekey key than the stored one")
	}
	mustOK(t, c, "crypto gdoi ks rekey")
	var pkt []byte
	select {
	case pkt = <-tee.pushes:
	case <-time.After(20 * time.Second):
		t.Fatal("no rekey reached the GM")
	}
	rk, err := gdoi.OpenPush(pkt, gdoi.KEK{SPI: kek.SPI, Key: kek.Key}, pub, kek.SigAlg)
	if err != nil {
		t.Fatalf("the rekey does not verify with the exported public key: %v", err)
	}
	if rk.Seq == 0 {
		t.Errorf("rekey %+v", rk)
	}
	other := mustGen(t, "rsa", 2048)
	if _, err := gdoi.OpenPush(pkt, gdoi.KEK{SPI: kek.SPI, Key: kek.Key}, other.Public(), kek.SigAlg); err == nil {
		t.Error("the rekey also verifies with another key: the check proves nothing")
	}
	// Audit: the KS's commands were logged with their user.
	for _, want := range []string{"logged command:crypto key export rsa REKEY pem terminal"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}
