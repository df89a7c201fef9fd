package testnet

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// pair is two charons, the initiator in namespace <name>-i and the responder
// in <name>-r, joined by a veth called <name> with 10.231.<net>.1/24 on the
// initiator's end and .2 on the responder's.
type pair struct {
	ini, res       *Charon
	iniIP, resIP   string
	iniLog, resLog string
}

func newPair(t *testing.T, name string, net int) *pair {
	t.Helper()
	RequireCharon(t)
	a := NewNetns(t, "gvt-"+name+"-i")
	b := NewNetns(t, "gvt-"+name+"-r")
	p := &pair{iniIP: fmt.Sprintf("10.231.%d.1", net), resIP: fmt.Sprintf("10.231.%d.2", net)}
	VethBetween(t, "gvt"+name, a, b,
		netip.MustParsePrefix(p.iniIP+"/24"), netip.MustParsePrefix(p.resIP+"/24"))
	p.ini = StartCharon(t, a, CharonConfig{})
	p.res = StartCharon(t, b, CharonConfig{})
	return p
}

// ikev1Conn renders a swanctl connection without children: IKEv1 main mode
// to port 500; local and remote are the bodies of the local/remote sections.
func ikev1Conn(name, localIP, remoteIP, proposals, local, remote string) string {
	return fmt.Sprintf(`connections {
	%s {
		version = 1
		aggressive = no
		local_addrs = %s
		remote_addrs = %s
		remote_port = 500
		proposals = %s
		local {
			%s
		}
		remote {
			%s
		}
	}
}
`, name, localIP, remoteIP, proposals, local, remote)
}

// establish initiates ike from p.ini and waits for ESTABLISHED on both ends.
func (p *pair) establish(t *testing.T, ike string) {
	t.Helper()
	start := time.Now()
	out := p.ini.Initiate(t, ike)
	t.Logf("initiate:\n%s", out)
	iniSA := p.ini.WaitEstablished(t, ike, 30*time.Second)
	resSA := p.res.WaitEstablished(t, ike, 30*time.Second)
	t.Logf("established in %v\ninitiator:\n%s\nresponder:\n%s", time.Since(start), iniSA, resSA)
	p.iniLog, p.resLog = p.ini.Log(), p.res.Log()
}

// proves: groundwork (interop harness for IKEv1 with strongSwan)
func TestCharonIKEv1PSK(t *testing.T) {
	t.Parallel()
	p := newPair(t, "psk", 11)
	secrets := fmt.Sprintf(`secrets {
	ike-x {
		secret = "groupvpn-testnet-psk"
		id-1 = %s
		id-2 = %s
	}
}
`, p.iniIP, p.resIP)
	p.ini.Load(t, ikev1Conn("psk", p.iniIP, p.resIP, "aes128-sha256-modp2048",
		"auth = psk\n\t\t\tid = "+p.iniIP, "auth = psk\n\t\t\tid = "+p.resIP)+secrets, nil)
	p.res.Load(t, ikev1Conn("psk", p.resIP, p.iniIP, "aes128-sha256-modp2048",
		"auth = psk\n\t\t\tid = "+p.resIP, "auth = psk\n\t\t\tid = "+p.iniIP)+secrets, nil)
	p.establish(t, "psk")
	t.Logf("initiator log:\n%s", p.iniLog)
	_ = strings.Contains
}
