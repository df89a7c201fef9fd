// Package dptest runs the data-plane engine in testnet's namespaces: the
// code the engine's netns proofs and `groupvpn bench dataplane` share (it
// cannot live in testnet, which internal/esp's tests import).
package dptest

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/groupvpn/groupvpn/internal/dataplane"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

// EngineTUN is the name and MTU of the TUN device StartEngine creates: the
// MTU leaves room for the largest ESP overhead on the 1500-octet links.
const (
	EngineTUN    = "gtun"
	EngineTUNMTU = 1400
)

// StartEngine runs the data-plane engine in ns (a GM of testnet.Sites) with
// keys: a TUN device, the engine, and its policy routing for testnet.SitesPrefix
// with lan as the GM's own LAN and self as its source address. stop closes
// the engine and removes the routes (once; cleanup calls it too), so that
// the GM routes in the clear again.
func StartEngine(t testing.TB, ns *testnet.Netns, keys dataplane.Keys, lan netip.Prefix, self netip.Addr, mark uint32) (e *dataplane.Engine, stop func()) {
	t.Helper()
	ns.Do(t, func() error {
		dev, err := tun.CreateTUN(EngineTUN, EngineTUNMTU)
		if err != nil {
			return fmt.Errorf("create TUN: %w", err)
		}
		e, err = dataplane.New(dataplane.Config{Keys: keys, TUN: dev, Mark: mark})
		if err != nil {
			dev.Close()
			return err
		}
		return nil
	})
	r := &dataplane.Routes{TUN: EngineTUN, Mark: mark,
		Protected: []netip.Prefix{testnet.SitesPrefix},
		Local:     []netip.Prefix{lan},
		Src:       self,
		IP: func(args ...string) error {
			out, err := exec.Command("ip", append([]string{"-n", ns.Name}, args...)...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
			}
			return nil
		}}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			e.Close()
			r.Remove()
		})
	}
	t.Cleanup(stop)
	if err := r.Install(); err != nil {
		t.Fatal(err)
	}
	ns.Run(t, "sysctl", "-qw", "net.ipv4.conf."+EngineTUN+".rp_filter=0")
	if err := e.Run(); err != nil {
		t.Fatal(err)
	}
	return e, stop
}
