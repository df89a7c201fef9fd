package app

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/ikev2d"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

const v2KSConf = `hostname ks1
crypto isakmp policy 10
 encryption aes 256
 hash sha256
 authentication pre-share
 group 14
crypto isakmp key v1-secret address 127.0.0.0 255.0.0.0
crypto ikev2 proposal p-gcm
 encryption aes-gcm-128
 prf sha384
 group 20
crypto ikev2 policy pol
 proposal p-gcm
crypto ikev2 keyring keys
 peer members
  address 127.0.0.0 255.0.0.0
  pre-shared-key v2-secret
crypto ikev2 profile members
 match identity remote address 127.0.0.0 255.0.0.0
 authentication local pre-share
 authentication remote pre-share
 keyring local keys
crypto key import ec REKEY file REKEYFILE
ip access-list extended traffic
 permit ip 10.61.0.0 0.0.255.255 10.61.0.0 0.0.255.255
crypto ipsec transform-set ts esp-gcm 256
crypto ipsec profile p
 set transform-set ts
crypto gdoi group V2
 identity number 4321
 server local
  rekey authentication mypubkey ec REKEY
  rekey transport unicast
  address ipv4 127.0.0.1
  gikev2 members
  sa ipsec 1
   profile p
   match address ipv4 traffic
crypto gdoi group V1
 identity number 1234
 server local
  rekey authentication mypubkey ec REKEY
  rekey transport unicast
  address ipv4 127.0.0.1
  sa ipsec 1
   profile p
   match address ipv4 traffic
end
`

const v2GMConf = `hostname gm1
crypto ikev2 proposal p-gcm
 encryption aes-gcm-128
 prf sha384
 group 20
crypto ikev2 policy pol
 proposal p-gcm
crypto ikev2 keyring keys
 peer ks1
  address 127.0.0.1
  pre-shared-key v2-secret
crypto ikev2 profile ks
 authentication local pre-share
 authentication remote pre-share
 keyring local keys
crypto gkm group V2
 identity number 4321
 server address ipv4 127.0.0.1
 client protocol gikev2 ks
crypto map M 10 gdoi
 set group V2
interface lo
 crypto map M
end
`

// proves: G4 (issue 17: ikev2d runs the IOS-XE G-IKEv2 configuration of
// docs/config.md: the KS serves only the group with gikev2 PROFILE under
// server local (not the GDOI group of the same file; a file with no
// G-IKEv2 group is refused), IKE SAs use the
// crypto ikev2 proposal (AES-GCM-128, PRF SHA-384, group 20) and the
// keyring's pre-shared key; a member with client protocol gikev2 registers
// and installs the group's TEK)
func TestIkev2dConfigGIKEv2(t *testing.T) {
	dir := t.TempDir()
	testnet.WriteECKey(t, filepath.Join(dir, "rekey.pem"))
	load := func(name, text string) *policy.Config {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(text, "REKEYFILE", filepath.Join(dir, "rekey.pem"))), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := policy.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ksAddr := netip.MustParseAddrPort("127.0.0.1:0")
	// A file without G-IKEv2 groups is isakmpd's: refused.
	if _, err := ikev2dConfig(load("v1.conf", strings.Replace(v2KSConf, "  gikev2 members\n", "", 1)), []netip.AddrPort{ksAddr}, 0); err == nil ||
		!strings.Contains(err.Error(), "no group of the file is served by G-IKEv2") {
		t.Fatalf("a file without G-IKEv2 groups: %v", err)
	}
	kc, err := ikev2dConfig(load("ks.conf", v2KSConf), []netip.AddrPort{ksAddr}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(kc.KS) != 1 || kc.KS[0].Name != "V2" || len(kc.Suites) != 1 || kc.Suites[0].Encr != wire.EncrAESGCM16 ||
		kc.Suites[0].PRF != wire.PRFHMACSHA2384 || kc.Suites[0].Group != 20 {
		t.Fatalf("KS mapping: %d groups, suites %v", len(kc.KS), kc.Suites)
	}
	if k, ok := kc.Creds.PSK(netip.MustParseAddr("127.0.0.9")); !ok || string(k) != "v2-secret" {
		t.Fatalf("keyring PSK %q %v", k, ok)
	}
	ks, err := ikev2d.New(kc, ikev2d.Options{Listen: []netip.AddrPort{ksAddr}})
	if err != nil {
		t.Fatal(err)
	}
	at := ks.Addrs()[0]
	gc, err := ikev2dConfig(load("gm.conf", v2GMConf), []netip.AddrPort{netip.MustParseAddrPort("127.0.0.5:0")}, at.Port())
	if err != nil {
		t.Fatal(err)
	}
	if len(gc.GM) != 1 || gc.GM[0].ID != 4321 || gc.GM[0].Servers[0] != at {
		t.Fatalf("GM mapping: %+v", gc.GM)
	}
	dp := sadb.NewMemory()
	gm, err := ikev2d.New(gc, ikev2d.Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.5:0")}, Dataplane: dp})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ks.Run(ctx)
	go gm.Run(ctx)
	for end := time.Now().Add(10 * time.Second); len(dp.TEKs()) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			var st []ikev2d.MemberStatus
			gm.Do(ctx, func() { st = gm.Members() })
			t.Fatalf("no TEK installed: %+v", st)
		}
	}
}

// proves: O1 (issue 17: config check says which groups of a file isakmpd
// leaves to ikev2d, so one file read by both gives each group one owner)
func TestConfigCheckNamesGroupsLeftToIkev2d(t *testing.T) {
	dir := t.TempDir()
	testnet.WriteECKey(t, filepath.Join(dir, "rekey.pem"))
	file := filepath.Join(dir, "ks.conf")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(v2KSConf, "REKEYFILE", filepath.Join(dir, "rekey.pem"))), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run(t, "", "config", "check", file)
	if code != 0 || !strings.Contains(out, file+": groups left to ikev2d (G-IKEv2), not run by isakmpd: V2\n") {
		t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, out, errs)
	}
}
