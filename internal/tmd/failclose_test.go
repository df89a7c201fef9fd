package tmd

import (
	"net/netip"
	"testing"

	"github.com/groupvpn/groupvpn/internal/gm"
	"github.com/groupvpn/groupvpn/internal/sadb"
)

// proves: T3 (issue 12: fail-close drops before registration) — the
// fail-close bootstrap policy a GM installs before its first registration
// (a permit of everything that names no TEK yet, after the deny entries)
// is accepted by set-policy and reaches the backend with the group's fail
// mode. Regression: tmd refused a permit without an SPI, so the bootstrap
// never reached the data plane.
func TestBootstrapPolicyAccepted(t *testing.T) {
	path := sockPath(t)
	be := NewMemoryBackend()
	r := startWith(t, path, Options{Backend: be})
	c := dial(t, path, "isakmpd")
	any4 := netip.MustParsePrefix("0.0.0.0/0")
	p := gm.Bootstrap([]netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:848")},
		[]sadb.PolicyEntry{{Action: sadb.Bypass, IPProto: 89, Src: any4, Dst: any4}})
	c.SetFailMode("G", sadb.FailClose)
	c.SetPolicy("G", p)
	wantPolicy(t, r, be, "G", p, sadb.FailClose)
}
