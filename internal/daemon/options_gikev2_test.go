package daemon_test

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/groupvpn/groupvpn/internal/daemon"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

// sharedConf is one file for isakmpd and ikev2d: a GDOI key-server group
// (V1), a G-IKEv2 one (V2, gikev2 PROFILE under server local) and a
// G-IKEv2 member group (GM2, client protocol gikev2 PROFILE).
const sharedConf = `hostname ks1
crypto isakmp policy 10
 encryption aes 256
 hash sha256
 authentication pre-share
 group 14
crypto isakmp key v1-secret address 127.0.0.0 255.0.0.0
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
crypto gkm group GM2
 identity number 777
 server address ipv4 127.0.0.2
 client protocol gikev2 members
crypto map M 10 gdoi
 set group GM2
interface lo
 crypto map M
end
`

func loadShared(t *testing.T, text string) *policy.Config {
	t.Helper()
	dir := t.TempDir()
	testnet.WriteECKey(t, filepath.Join(dir, "rekey.pem"))
	p := filepath.Join(dir, "shared.conf")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(text, "REKEYFILE", filepath.Join(dir, "rekey.pem"))), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := policy.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// proves: G4, O4 (issue 17: a file read by isakmpd and ikev2d gives each
// group one key owner: isakmpd maps only its GDOI groups, leaves the
// G-IKEv2 key-server and member groups to ikev2d, and says so at start)
func TestOptionsLeaveGIKEv2GroupsToIkev2d(t *testing.T) {
	c := loadShared(t, sharedConf)
	listen := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}
	o, err := daemon.Options(c, listen, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.KS) != 1 || o.KS[0].Name != "V1" || len(o.GM) != 0 {
		t.Fatalf("isakmpd maps KS %v, GM %v: want the GDOI group V1 only", o.KS, o.GM)
	}
	v2, err := daemon.OptionsFor(c, listen, 0, policy.ProtocolGIKEv2)
	if err != nil {
		t.Fatal(err)
	}
	if len(v2.KS) != 1 || v2.KS[0].Name != "V2" || len(v2.GM) != 1 || v2.GM[0].Name != "GM2" {
		t.Fatalf("ikev2d maps KS %v, GM %v: want V2 and GM2", v2.KS, v2.GM)
	}
	if got := daemon.LeftToIKEv2d(c); !slices.Equal(got, []string{"V2", "GM2"}) {
		t.Fatalf("LeftToIKEv2d = %v", got)
	}
	logs := &testnet.Buffer{}
	d, err := daemon.New(c, listen, 0, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	d.Node.Close()
	if !strings.Contains(logs.String(), `groups left to ikev2d: their members register by G-IKEv2" groups=V2,GM2`) {
		t.Fatalf("no start line naming the groups left to ikev2d:\n%s", logs.String())
	}
	// A file of G-IKEv2 groups only has nothing for isakmpd, and says why.
	only := strings.Replace(sharedConf, "crypto gdoi group V1\n", "crypto gdoi group V1\n client protocol gikev2 members\n", 1)
	if _, err := daemon.Options(loadShared(t, only), listen, 0); err == nil || !strings.Contains(err.Error(), "its G-IKEv2 groups V2, V1, GM2 are ikev2d's") {
		t.Fatalf("a G-IKEv2-only file for isakmpd: %v", err)
	}
}
