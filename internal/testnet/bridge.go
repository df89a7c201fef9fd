package testnet

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// Bridge makes one L2 segment that any number of namespaces join with
// AttachToBridge, for tests that need several hosts on one link (multicast
// rekeys reaching many group members).
//
// The bridge lives in a namespace of its own, called name, as a Linux
// bridge device also called name; nothing of it is in the root namespace,
// so the host's firewall and bridge-netfilter settings do not see its
// traffic and a killed run leaves only a namespace the next run deletes
// (NewNetns). name must be a valid link name (1 to 15 bytes) and, like the
// other names, distinct between the tests of a run. Bridge returns name,
// which is what AttachToBridge takes.
//
// The bridge forwards at once (no STP, no forwarding delay) and has IGMP
// snooping off: it floods multicast to every port like a hub, so what a
// namespace receives depends only on its own group memberships (the
// receiving IP stack drops groups it has not joined), not on whether the
// bridge saw its IGMP report in time.
func Bridge(t testing.TB, name string) string {
	t.Helper()
	RequireNetns(t)
	checkLinkName(t, name)
	ns := NewNetns(t, name)
	mustRun(t, "ip", "-n", ns.Name, "link", "add", "name", name, "type", "bridge",
		"stp_state", "0", "forward_delay", "0", "mcast_snooping", "0")
	mustRun(t, "ip", "-n", ns.Name, "link", "set", "dev", name, "up")
	bridgePortsMu.Lock()
	bridgePorts[name] = 0
	bridgePortsMu.Unlock()
	t.Cleanup(func() {
		bridgePortsMu.Lock()
		delete(bridgePorts, name)
		bridgePortsMu.Unlock()
	})
	return name
}

// bridgePorts counts the ports of each live bridge, to name the next one.
var (
	bridgePortsMu sync.Mutex
	bridgePorts   = map[string]int{}
)

// checkLinkName fails the test unless name is usable as a link name.
func checkLinkName(t testing.TB, name string) {
	t.Helper()
	if len(name) == 0 || len(name) > 15 || strings.ContainsAny(name, "/ \t\n:") {
		t.Fatalf("testnet: bad link name %q (1 to 15 bytes, no '/', ':' or blanks)", name)
	}
}

// AttachToBridge plugs namespace ns into the bridge made by Bridge: a veth
// pair whose bridge end (called p0, p1, ... in the bridge's namespace) is a
// port of the bridge, and whose other end, in ns, is called like the bridge
// and returned. That end gets addr (if valid), multicast on, and both ends
// are up. A namespace attaches to a given bridge once; it may attach to
// several bridges. The pair goes away with either namespace; it is also
// deleted on cleanup.
func AttachToBridge(t testing.TB, bridge string, ns *Netns, addr netip.Prefix) (ifName string) {
	t.Helper()
	RequireNetns(t)
	if ns == nil {
		t.Fatalf("testnet: AttachToBridge %s: ns must be a namespace", bridge)
	}
	bridgePortsMu.Lock()
	n, ok := bridgePorts[bridge]
	if ok {
		bridgePorts[bridge] = n + 1
	}
	bridgePortsMu.Unlock()
	if !ok {
		t.Fatalf("testnet: AttachToBridge: no bridge %q made by Bridge in this test", bridge)
	}
	port := fmt.Sprintf("p%d", n)
	ifName = bridge
	mustRun(t, "ip", "-n", bridge, "link", "add", "name", port, "type", "veth",
		"peer", "name", ifName, "netns", ns.Name)
	t.Cleanup(func() {
		if _, err := run("ip", "-n", bridge, "link", "show", "dev", port); err == nil {
			if _, err := run("ip", "-n", bridge, "link", "del", "dev", port); err != nil {
				t.Errorf("testnet: cleanup of bridge port %s/%s: %v", bridge, port, err)
			}
		}
	})
	mustRun(t, "ip", "-n", bridge, "link", "set", "dev", port, "master", bridge)
	mustRun(t, "ip", "-n", bridge, "link", "set", "dev", port, "up")
	if addr.IsValid() {
		args := []string{"-n", ns.Name, "addr", "add", addr.String(), "dev", ifName}
		if addr.Addr().Is6() {
			args = append(args, "nodad")
		}
		mustRun(t, "ip", args...)
	}
	mustRun(t, "ip", "-n", ns.Name, "link", "set", "dev", ifName, "multicast", "on", "up")
	return ifName
}
