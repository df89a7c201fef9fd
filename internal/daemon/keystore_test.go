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
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
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

// proves: O1 (issue 14 item 2: cooperating key servers share the rekey
// key: crypto key export on one state directory's store, crypto key
// import on another's (pasted line by line at the prompts, given as the
// request's input by a program, or read from a file), and both show the
// same public key; replacing asks first, as IOS does)
func TestKeyStoreExportImportBetweenStateDirs(t *testing.T) {
	dir, err := os.MkdirTemp("", "ksexp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	a := serveCtl(t, daemon.KeyServer(keystore.Open(filepath.Join(dir, "a", "keys")), nil), filepath.Join(dir, "a.sock"))
	b := serveCtl(t, daemon.KeyServer(keystore.Open(filepath.Join(dir, "b", "keys")), nil), filepath.Join(dir, "b.sock"))

	mustOK(t, a, "crypto key generate rsa label GETVPN-REKEY modulus 3072")
	mustOK(t, a, "crypto key generate ec keysize 384 label EC-REKEY")
	want := map[string]string{}
	for _, k := range shownKeys(t, a, "show crypto key mypubkey all") {
		want[k.Name] = k.PublicKey
	}
	if len(want) != 2 {
		t.Fatalf("store a: %v", want)
	}

	// Pasted: each line an answer, ending at the private key's END line.
	_, rsaPEM := exported(t, mustOK(t, a, "crypto key export rsa GETVPN-REKEY pem terminal").Text)
	pubAndPriv := mustOK(t, a, "crypto key export rsa GETVPN-REKEY pem terminal").Text
	paste := strings.Split(strings.TrimSpace(pubAndPriv[strings.Index(pubAndPriv, "-----BEGIN"):]), "\n")
	r := run(t, b, "crypto key import rsa GETVPN-REKEY pem terminal", paste...)
	if !r.OK || !strings.Contains(r.Text, "% Key pair imported: GETVPN-REKEY (RSA 3072)") {
		t.Fatalf("paste import: %+v", r)
	}
	// A program: the PEM in the request's input.
	ecText := mustOK(t, a, "crypto key export ec EC-REKEY pem terminal").Text
	resp, err := b.Do(context.Background(), &ctl.WireRequest{V: ctl.Version, Cmd: "crypto key import ec EC-REKEY pem terminal", Input: ecText})
	if err != nil || !resp.OK {
		t.Fatalf("input import: %v %+v", err, resp)
	}
	got := map[string]string{}
	for _, k := range shownKeys(t, b, "show crypto key mypubkey all") {
		got[k.Name] = k.PublicKey
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("store b shows %v, store a %v", got, want)
	}

	// A file: replacing an existing label asks; "no" keeps the key.
	pemFile := filepath.Join(dir, "other.pem")
	other, _ := keystore.PrivatePEM(mustGen(t, "rsa", 2048))
	os.WriteFile(pemFile, other, 0o600)
	r = run(t, b, "crypto key import rsa GETVPN-REKEY pem url "+pemFile, "no")
	if !r.OK || !strings.Contains(r.Text, "kept") {
		t.Fatalf("import over an existing key, answered no: %+v", r)
	}
	if k := shownKeys(t, b, "show crypto key mypubkey rsa GETVPN-REKEY"); k[0].PublicKey != want["GETVPN-REKEY"] {
		t.Fatal("answering no replaced the key")
	}
	r, err = b.Run(context.Background(), "crypto key import rsa GETVPN-REKEY pem url "+pemFile)
	if err != nil || r.Prompt != "% You already have RSA keys defined named GETVPN-REKEY.\n% Do you really want to replace them? [yes/no]: " {
		t.Fatalf("the replace question: %v %+v", err, r)
	}
	mustOK(t, b, "crypto key import rsa GETVPN-REKEY pem url file:"+pemFile, "yes")
	if k := shownKeys(t, b, "show crypto key mypubkey rsa GETVPN-REKEY"); k[0].PublicKey == want["GETVPN-REKEY"] {
		t.Fatal("answering yes kept the old key")
	}
	// The wrong type, a public key alone, junk: refused, nothing stored.
	for cmd, msg := range map[string]string{
		"crypto key import ec X pem url " + pemFile: "the PEM key is an RSA key",
		"crypto key import rsa X pem url /dev/zero": "not a regular file",
		"crypto key import rsa X pem url rel.pem":   "not an absolute path",
	} {
		if r := run(t, b, cmd); r.OK || !strings.Contains(r.Error, msg) {
			t.Errorf("%s: %+v, want %q", cmd, r, msg)
		}
	}
	pubOnly := rsaPEM[:0] + pubAndPriv[strings.Index(pubAndPriv, "-----BEGIN PUBLIC"):strings.Index(pubAndPriv, "-----BEGIN PRIVATE")]
	if resp, _ := b.Do(context.Background(), &ctl.WireRequest{V: ctl.Version, Cmd: "crypto key import rsa X pem terminal", Input: pubOnly}); resp.OK || !strings.Contains(resp.Error, "no PEM private key") {
		t.Errorf("a public key alone: %+v", resp)
	}
	if r := run(t, b, "crypto key import rsa X pem terminal", "junk", "quit"); r.OK || !strings.Contains(r.Error, "no PEM private key") {
		t.Errorf("junk pasted: %+v", r)
	}
	if ks := shownKeys(t, b, "show crypto key mypubkey all"); len(ks) != 2 {
		t.Errorf("refused imports stored keys: %v", ks)
	}
}

// proves: O1 (issue 14 item 2: labels from the control socket are hostile
// input: path traversal and odd characters are refused with the reason,
// and nothing is written outside the key store (or at all); zeroize
// removes a key after asking)
func TestKeyStoreHostileLabelsOnSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "kshost")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	st := keystore.Open(filepath.Join(dir, "state", "keys"))
	c := serveCtl(t, daemon.KeyServer(st, nil), filepath.Join(dir, "k.sock"))
	for _, label := range []string{"../escape", "..", "a/../../b", ".hidden", "-dash", "x\\y", strings.Repeat("L", 65), "%2e%2e"} {
		for _, cmd := range []string{
			"crypto key generate ec keysize 256 label " + label,
			"crypto key import ec " + label + " pem url /etc/hostname",
			"crypto key export ec " + label + " pem terminal",
			"crypto key zeroize ec " + label,
			"show crypto key mypubkey ec " + label,
		} {
			if r := run(t, c, cmd, "yes"); r.OK || !strings.Contains(r.Error, "key label") {
				t.Errorf("%s: %+v", cmd, r)
			}
		}
	}
	var files []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && !strings.HasSuffix(p, ".sock") {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 0 {
		t.Fatalf("hostile labels wrote %v", files)
	}
	if r := run(t, c, "crypto key generate ec keysize 521 label K"); r.OK || !strings.Contains(r.Error, "256 (P-256) or 384 (P-384)") {
		t.Errorf("keysize 521: %+v", r)
	}
	if r := run(t, c, "crypto key generate rsa label K modulus 1024"); r.OK || !strings.Contains(r.Error, "shorter than 2048 bits") {
		t.Errorf("modulus 1024: %+v", r)
	}
	// Without modulus, IOS asks for it; the default is 2048.
	r := run(t, c, "crypto key generate rsa label K", "")
	if !r.OK || !strings.Contains(r.Text, "% The key modulus size is 2048 bits") {
		t.Fatalf("generate without modulus: %+v", r)
	}
	r = run(t, c, "crypto key zeroize rsa K", "yes")
	if !r.OK || !strings.Contains(r.Text, "% Keys named K removed") || st.Exists("K") {
		t.Fatalf("zeroize: %+v", r)
	}
	if r := run(t, c, "crypto key zeroize rsa K"); r.OK || !strings.Contains(r.Error, "No RSA keys named K") {
		t.Errorf("zeroize again: %+v", r)
	}
}

// proves: O1, O3 (issue 14 items 2 and 6: on a KS's control socket the
// key commands are state-changing: audited with the user, refused to a
// read-only user, who can still show the public keys but never export the
// private key; in configuration mode crypto key generate acts at once,
// asks before replacing, and never appears in the running configuration)
func TestKeyStoreAuditReadOnlyAndConfigMode(t *testing.T) {
	dir, err := os.MkdirTemp("", "ksaud")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	st := keystore.Open(filepath.Join(dir, "keys"))
	if _, err := st.Put("REKEY", mustGen(t, "rsa", 2048)); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "ks.conf")
	os.WriteFile(file, []byte(strings.Replace(storeKS, "127.0.41.1", "127.0.42.1", 1)), 0o600)
	cfg, err := policy.LoadWith(file, policy.Options{KeyStore: st})
	if err != nil {
		t.Fatal(err)
	}
	var logs testnet.Buffer
	d, err := daemon.New(cfg, []netip.AddrPort{netip.MustParseAddrPort("127.0.42.1:0")}, 0, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	d.ServeKeyStore(st)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, "") }()
	t.Cleanup(func() { cancel(); <-done })

	ro := ctl.WithPeer(ctx, ctl.Peer{UID: 1001, GID: 1001, PID: 77, User: "alice", ReadOnly: true})
	rw := ctl.WithPeer(ctx, ctl.Peer{UID: 1002, GID: 1002, PID: 78, User: "bob"})
	ss := d.Ctl.NewSession()
	if r := ss.Do(ro, &ctl.WireRequest{V: ctl.Version, Cmd: "show crypto key mypubkey rsa"}); !r.OK || !strings.Contains(r.Text, "Key name: REKEY") || strings.Contains(r.Text, "PRIVATE") {
		t.Fatalf("show from a read-only user: %+v", r)
	}
	denied := []string{"crypto key export rsa REKEY pem terminal", "crypto key generate rsa label X modulus 2048",
		"crypto key zeroize rsa REKEY", "crypto key import rsa X pem url /etc/hostname"}
	for _, cmd := range denied {
		r := ss.Do(ro, &ctl.WireRequest{V: ctl.Version, Cmd: cmd})
		if r.OK || !strings.HasPrefix(r.Error, "% Permission denied: read-only access (user alice)") || strings.Contains(r.Text, "PRIVATE KEY") {
			t.Fatalf("%s from a read-only user: %+v", cmd, r)
		}
	}
	// bob: export, then configuration mode.
	if r := ss.Do(rw, &ctl.WireRequest{V: ctl.Version, Cmd: "crypto key export rsa REKEY pem terminal"}); !r.OK || !strings.Contains(r.Text, "-----BEGIN PRIVATE KEY-----") {
		t.Fatalf("export by the owner: %+v", r)
	}
	r := ss.Do(rw, &ctl.WireRequest{V: ctl.Version, Cmd: "configure terminal"})
	var cs ctl.ConfigState
	if err := json.Unmarshal(r.Data, &cs); err != nil {
		t.Fatal(err)
	}
	line := func(l string, answer ...string) *ctl.WireResponse {
		t.Helper()
		cmd := ctl.CmdConfigSession + " " + cs.Session
		r := ss.Do(rw, &ctl.WireRequest{V: ctl.Version, Cmd: cmd, Input: l})
		for _, a := range answer {
			if r.Token == "" {
				t.Fatalf("%s: no question to answer %q: %+v", l, a, r)
			}
			r = ss.Do(rw, &ctl.WireRequest{V: ctl.Version, Cmd: cmd, Input: l, Token: r.Token, Answer: a})
		}
		return r
	}
	old := shownKeys(t, mustClient(t, d), "show crypto key mypubkey rsa REKEY")[0].PublicKey
	if r := line("cry key gen ec keys 256 label NEW-EC"); !r.OK || !strings.Contains(r.Text, "[OK]") {
		t.Fatalf("generate in configuration mode: %+v", r)
	}
	r = line("crypto key generate rsa general-keys label REKEY modulus 2048")
	if r.OK || r.Prompt != "% You already have RSA keys defined named REKEY.\n% Do you really want to replace them? [yes/no]: " {
		t.Fatalf("replace in configuration mode did not ask: %+v", r)
	}
	r = line("crypto key generate rsa general-keys label REKEY modulus 2048", "yes")
	if !r.OK || !strings.Contains(r.Text, "signs the rekeys of group STORE") {
		t.Fatalf("replace answered yes: %+v", r)
	}
	if r := line("end"); !r.OK {
		t.Fatalf("end: %+v", r)
	}
	if strings.Contains(d.Config().Render(), "crypto key") {
		t.Errorf("a key command reached the running configuration:\n%s", d.Config().Render())
	}
	now := shownKeys(t, mustClient(t, d), "show crypto key mypubkey rsa REKEY")[0].PublicKey
	if now == old {
		t.Error("the key was not replaced")
	}
	// The running KS keeps the key it loaded until a reload, which takes
	// the replaced one from the store.
	pubHex := func() string {
		der, _ := keystore.PublicDER(d.Config().KSGroups()[0].Server.RekeyKey.Signer.Public())
		return hex.EncodeToString(der)
	}
	if pubHex() != old {
		t.Error("the running configuration's key changed without a reload")
	}
	if err := d.Reload(); err != nil {
		t.Fatalf("reload after the key was replaced: %v", err)
	}
	if pubHex() != now {
		t.Error("the reload did not take the replaced key")
	}
	r = ss.Do(rw, &ctl.WireRequest{V: ctl.Version, Cmd: "crypto key zeroize ec NEW-EC"})
	if r = ss.Do(rw, &ctl.WireRequest{V: ctl.Version, Cmd: "crypto key zeroize ec NEW-EC", Token: r.Token, Answer: "yes"}); !r.OK {
		t.Fatalf("zeroize: %+v", r)
	}
	// Zeroizing the key in use warns; the running KS keeps it, and a
	// reload is refused with the reason until the key is back.
	r = ss.Do(rw, &ctl.WireRequest{V: ctl.Version, Cmd: "crypto key zeroize rsa REKEY"})
	if !strings.Contains(r.Prompt, "signs the rekeys of group STORE") {
		t.Fatalf("zeroize of the key in use does not warn: %+v", r)
	}
	if r = ss.Do(rw, &ctl.WireRequest{V: ctl.Version, Cmd: "crypto key zeroize rsa REKEY", Token: r.Token, Answer: "yes"}); !r.OK {
		t.Fatalf("zeroize REKEY: %+v", r)
	}
	running := d.Config()
	if err := d.Reload(); err == nil || !strings.Contains(err.Error(), `key "REKEY" is not defined`) || d.Config() != running {
		t.Fatalf("reload without the key: %v", err)
	}
	logText := logs.String()
	for _, want := range []string{
		"%PARSER-4-CFGLOG_DENIED: User:alice  denied command:crypto key export rsa REKEY pem terminal (read-only access)",
		"%PARSER-4-CFGLOG_DENIED: User:alice  denied command:crypto key generate rsa label X modulus 2048 (read-only access)",
		"%PARSER-5-CFGLOG_LOGGEDCMD: User:bob  logged command:crypto key export rsa REKEY pem terminal",
		"%PARSER-5-CFGLOG_LOGGEDCMD: User:bob  logged command:cry key gen ec keys 256 label NEW-EC", // as typed
		"%PARSER-5-CFGLOG_LOGGEDCMD: User:bob  logged command:crypto key generate rsa general-keys label REKEY modulus 2048",
		"%PARSER-5-CFGLOG_LOGGEDCMD: User:bob  logged command:crypto key zeroize ec NEW-EC",
		"%CRYPTO_ENGINE-5-KEY_ADDITION: A key named NEW-EC has been generated or imported by crypto config",
		"%CRYPTO_ENGINE-5-KEY_REPLACE: A key named REKEY has been replaced by crypto config with new key data",
		"%CRYPTO_ENGINE-5-KEY_DELETED: A key named NEW-EC has been removed from key storage",
	} {
		if !strings.Contains(logText, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if strings.Contains(logText, "PRIVATE KEY") || strings.Contains(logText, "MII") {
		t.Error("key material reached the log")
	}
	if t.Failed() {
		t.Logf("log:\n%s", logText)
	}
}

// mustClient is an in-process client of d's control server (as the owner).
func mustClient(t *testing.T, d *daemon.Daemon) *ctl.Client {
	t.Helper()
	dir, err := os.MkdirTemp("", "kscl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return serveCtl(t, d.Ctl, filepath.Join(dir, "s.sock"))
}

// proves: O1, O3 (issue 14 items 2 and 6: on a real control socket made
// 0660 of a group (-socket-group), a process of another uid in the group,
// known by SO_PEERCRED, sees the public keys and is refused crypto key
// export (never receiving the private key), generate, import and zeroize)
func TestKeyStoreReadOnlyGroupOnDaemonSocket(t *testing.T) {
	testnet.RequireRoot(t) // the client runs as another uid; skips, or fails under CI=true
	grp := testnet.RequireGroup(t, "nogroup")
	gid, _ := strconv.Atoi(grp.Gid)
	dir, err := os.MkdirTemp("", "ksro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	st := keystore.Open(filepath.Join(dir, "keys"))
	if _, err := st.Put("REKEY", mustGen(t, "rsa", 2048)); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "ks.conf")
	os.WriteFile(file, []byte(strings.Replace(storeKS, "127.0.41.1", "127.0.43.1", 1)), 0o600)
	cfg, err := policy.LoadWith(file, policy.Options{KeyStore: st})
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(cfg, []netip.AddrPort{netip.MustParseAddrPort("127.0.43.1:0")}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.ServeKeyStore(st)
	sock := filepath.Join(dir, "ks.sock")
	ln, err := ctl.ListenGroup(sock, "nogroup")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "helper.test")
	b, err := os.ReadFile(self)
	if err != nil || os.WriteFile(bin, b, 0o755) != nil {
		t.Fatal("copying the test binary:", err)
	}
	cmds := []string{"show crypto key mypubkey rsa", "crypto key export rsa REKEY pem terminal", "crypto key generate rsa label X modulus 2048",
		"crypto key import rsa X pem url " + filepath.Join(dir, "keys", "REKEY.pem"), "crypto key zeroize rsa REKEY"}
	cmd := exec.Command(bin, "-test.run=^TestAuditHelper$")
	cmd.Env = append(os.Environ(), auditHelperEnv+"="+strings.Join(append([]string{sock}, cmds...), "\t"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: uint32(gid)}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client as uid 65534: %v (%s)", err, out)
	}
	if bytes.Contains(out, []byte("PRIVATE KEY")) {
		t.Fatal("the read-only user received a private key")
	}
	var rs []ctl.WireResponse
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r ctl.WireResponse
		if strings.HasPrefix(l, "{") && json.Unmarshal([]byte(l), &r) == nil {
			rs = append(rs, r)
		}
	}
	if len(rs) != len(cmds) {
		t.Fatalf("%d answers to %d commands: %s", len(rs), len(cmds), out)
	}
	if !rs[0].OK || !strings.Contains(rs[0].Text, "Key name: REKEY") {
		t.Errorf("show from the read-only group: %+v", rs[0])
	}
	for i, r := range rs[1:] {
		if r.OK || !strings.HasPrefix(r.Error, "% Permission denied: read-only access") {
			t.Errorf("%s from the read-only group: %+v", cmds[i+1], r)
		}
	}
	if keys, _ := st.List(); len(keys) != 1 || keys[0].Label != "REKEY" {
		t.Errorf("the store changed: %v", keys)
	}
}

// proves: O1 (issue 14 item 2: the rekey key of an IOS key server moves to
// groupvpn as IOS exports it, encrypted with a passphrase (3des): the
// import asks for the passphrase (never on the logged command line); the
// stored key is the one OpenSSL, which made the file, says it holds)
func TestKeyStoreImportEncryptedExport(t *testing.T) {
	testnet.RequireTools(t, "openssl")
	dir, err := os.MkdirTemp("", "ksenc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ios := filepath.Join(dir, "ios.pem")
	if b, err := exec.Command("openssl", "genrsa", "-traditional", "-des3", "-passout", "pass:cisco123", "-out", ios, "2048").CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v\n%s", err, b)
	}
	pubDER, err := exec.Command("openssl", "pkey", "-in", ios, "-passin", "pass:cisco123", "-pubout", "-outform", "DER").Output()
	if err != nil {
		t.Fatal(err)
	}
	c := serveCtl(t, daemon.KeyServer(keystore.Open(filepath.Join(dir, "keys")), nil), filepath.Join(dir, "k.sock"))
	r, err := c.Run(context.Background(), "crypto key import rsa GETVPN-REKEY pem url "+ios)
	if err != nil || r.Prompt != "% The private key is encrypted.\nPassphrase: " {
		t.Fatalf("no passphrase asked: %v %+v", err, r)
	}
	if r := run(t, c, "crypto key import rsa GETVPN-REKEY pem url "+ios, "wrong"); r.OK || !strings.Contains(r.Error, "wrong passphrase") {
		t.Fatalf("wrong passphrase: %+v", r)
	}
	// Pasted, as copied from the IOS terminal.
	b, _ := os.ReadFile(ios)
	paste := append(strings.Split(strings.TrimSpace(string(b)), "\n"), "cisco123")
	mustOK(t, c, "crypto key import rsa GETVPN-REKEY pem terminal", paste...)
	if k := shownKeys(t, c, "show crypto key mypubkey rsa GETVPN-REKEY"); k[0].PublicKey != hex.EncodeToString(pubDER) {
		t.Fatal("the stored key is not the one openssl holds")
	}
}

// proves: O1 (issue 14 item 2: crypto key generate lines as IOS
// configurations and guides write them are taken: exportable before or
// after the modulus, redundancy, exportable before the EC label)
func TestKeyGenerateIOSWordOrders(t *testing.T) {
	dir, err := os.MkdirTemp("", "ksord")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	st := keystore.Open(filepath.Join(dir, "keys"))
	c := serveCtl(t, daemon.KeyServer(st, nil), filepath.Join(dir, "k.sock"))
	for label, cmd := range map[string]string{
		"A": "crypto key generate rsa general-keys label A modulus 2048 exportable",
		"B": "crypto key generate rsa general-keys label B exportable modulus 2048",
		"C": "crypto key generate rsa label C modulus 2048 redundancy",
		"D": "crypto key generate rsa general-keys label D modulus 2048 exportable redundancy",
		"E": "crypto key generate ec keysize 384 exportable label E",
		"F": "crypto key generate ec keysize 256 label F exportable",
	} {
		mustOK(t, c, cmd)
		if !st.Exists(label) {
			t.Errorf("%s: no key %s", cmd, label)
		}
	}
}

// proves: O1 (issue 14 item 2: crypto key export ... pem terminal 3des
// gives the key as IOS imports it (crypto key import rsa LABEL pem
// terminal PASSPHRASE), the passphrase asked twice rather than typed on the
// logged command line; groupvpn's import of it asks for the passphrase and
// stores the same key)
func TestKeyStoreExport3DES(t *testing.T) {
	dir, err := os.MkdirTemp("", "ks3des")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	a := serveCtl(t, daemon.KeyServer(keystore.Open(filepath.Join(dir, "a")), nil), filepath.Join(dir, "a.sock"))
	b := serveCtl(t, daemon.KeyServer(keystore.Open(filepath.Join(dir, "b")), nil), filepath.Join(dir, "b.sock"))
	mustOK(t, a, "crypto key generate rsa label K modulus 2048")
	if r := run(t, a, "crypto key export rsa K pem terminal 3des", "cisco1234", "cisco1235"); r.OK || !strings.Contains(r.Error, "differ") {
		t.Fatalf("differing passphrases: %+v", r)
	}
	if r := run(t, a, "crypto key export rsa K pem terminal 3des cisco1234"); r.OK || !strings.Contains(r.Error, "Invalid input") {
		t.Fatalf("a passphrase on the command line: %+v", r)
	}
	text := mustOK(t, a, "crypto key export rsa K pem terminal 3des", "cisco1234", "cisco1234").Text
	if !strings.Contains(text, "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: DES-EDE3-CBC,") {
		t.Fatalf("export:\n%s", text)
	}
	paste := strings.Split(strings.TrimSpace(text[strings.Index(text, "-----BEGIN"):]), "\n")
	mustOK(t, b, "crypto key import rsa K pem terminal", append(paste, "cisco1234")...)
	if x, y := shownKeys(t, a, "show crypto key mypubkey rsa K"), shownKeys(t, b, "show crypto key mypubkey rsa K"); x[0].PublicKey != y[0].PublicKey {
		t.Fatal("the imported key differs")
	}
}

// proves: O1 (issue 14 item 2: the isakmpd process finds its key store
// next to its -state file: without the rekey key it refuses to start,
// saying where it looked and how to make the key; with the key generated
// by groupvpn key into that store it starts, and its control socket shows
// the key)
func TestIsakmpdKeyStoreNextToState(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	bin := testnet.Binary(t)
	dir, err := os.MkdirTemp("", "ksproc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conf := filepath.Join(dir, "ks.conf")
	os.WriteFile(conf, []byte(strings.Replace(storeKS, "127.0.41.1", "127.0.45.1", 1)), 0o600)
	sock := filepath.Join(dir, "ks.sock")
	args := []string{"isakmpd", "-f", conf, "-listen", "127.0.45.1", "-port", "23862", "-socket", sock, "-state", filepath.Join(dir, "state", "isakmpd.db")}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `key "REKEY" is not defined`) || !strings.Contains(string(out), filepath.Join(dir, "state", "keys")) ||
		!strings.Contains(string(out), "crypto key generate rsa general-keys label REKEY modulus 2048") {
		t.Fatalf("isakmpd without its rekey key: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "key", "-state", filepath.Join(dir, "state", "isakmpd.db"), "-c", "crypto key generate rsa general-keys label REKEY modulus 2048").CombinedOutput(); err != nil {
		t.Fatalf("groupvpn key: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, args...)
	var logs testnet.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Logged once its control socket is bound.
	logs.WaitContains(t, 20*time.Second, `msg="isakmpd started"`)
	out, err = exec.Command(bin, "cli", "-s", sock, "-c", "show crypto key mypubkey rsa | include name").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Key name: REKEY") {
		t.Fatalf("show crypto key mypubkey rsa: %v %s\n%s", err, out, logs.String())
	}
}
