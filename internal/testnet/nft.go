package testnet

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// RequireNft checks everything DropRandom needs: root, ip, and nftables'
// nft.
func RequireNft(t testing.TB) {
	t.Helper()
	RequireNetns(t)
	RequireTools(t, "nft")
}

// DropRandom makes namespace ns lose percent percent (0 to 100) of the
// datagrams it receives whose destination or source port is port, for proto
// "udp" or "tcp", each one independently at random. Only incoming packets
// are dropped (the input hook, so what reaches the namespace's own sockets,
// unicast and multicast alike, including multicast it loops back to
// itself): a drop on output would make the sender's sendmsg fail with EPERM
// rather than lose the packet silently as a network would. For loss in both
// directions between two namespaces, call DropRandom in both.
//
// The rules are an nftables table of their own in ns (inet family, so IPv4
// and IPv6), using "numgen random mod 100 < percent" (nft 0.8 or later);
// a packet whose source and destination ports are both port is still
// dropped once with probability percent/100. The table is deleted on
// cleanup; calling DropRandom again for the same proto and port replaces it.
func DropRandom(t testing.TB, ns *Netns, percent int, proto string, port int) {
	t.Helper()
	RequireNft(t)
	if ns == nil {
		t.Fatalf("testnet: DropRandom: ns must be a namespace")
	}
	if percent < 0 || percent > 100 {
		t.Fatalf("testnet: DropRandom: percent %d out of range 0..100", percent)
	}
	if proto != "udp" && proto != "tcp" {
		t.Fatalf("testnet: DropRandom: proto %q, want udp or tcp", proto)
	}
	if port < 1 || port > 65535 {
		t.Fatalf("testnet: DropRandom: port %d out of range 1..65535", port)
	}
	table := fmt.Sprintf("testnet_drop_%s_%d", proto, port)
	// A table of the same name from an earlier call: replace it.
	_, _ = run("ip", "netns", "exec", ns.Name, "nft", "delete", "table", "inet", table)
	rules := fmt.Sprintf(`table inet %[1]s {
	chain input {
		type filter hook input priority filter; policy accept;
		%[2]s dport %[3]d counter comment "seen"
		%[2]s dport %[3]d numgen random mod 100 < %[4]d counter drop
		%[2]s sport %[3]d %[2]s dport != %[3]d numgen random mod 100 < %[4]d counter drop
	}
}
`, table, proto, port, percent)
	cmd := ns.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("testnet: DropRandom in %s: nft -f: %v: %s\n%s", ns.Name, err, strings.TrimSpace(out.String()), rules)
	}
	t.Cleanup(func() {
		if _, err := run("ip", "netns", "exec", ns.Name, "nft", "list", "table", "inet", table); err != nil {
			return // gone with its namespace
		}
		if _, err := run("ip", "netns", "exec", ns.Name, "nft", "delete", "table", "inet", table); err != nil {
			t.Errorf("testnet: cleanup of nftables table %s in %s: %v", table, ns.Name, err)
		}
	})
}

// DropCounts returns the packets the DropRandom rules for proto and port in
// ns have dropped so far (the sum of their counters), for a test to show
// the loss came from them.
func DropCounts(t testing.TB, ns *Netns, proto string, port int) int {
	t.Helper()
	return dropCounters(t, ns, proto, port, " drop")
}

// DropSeen returns the packets to port that reached the DropRandom rules
// for proto and port in ns so far, dropped or not: more than zero shows the
// rules are in the packets' path, whatever chance dropped.
func DropSeen(t testing.TB, ns *Netns, proto string, port int) int {
	t.Helper()
	return dropCounters(t, ns, proto, port, `comment "seen"`)
}

// dropCounters sums the packet counters of the rules of DropRandom's table
// whose line contains mark.
func dropCounters(t testing.TB, ns *Netns, proto string, port int, mark string) int {
	t.Helper()
	table := fmt.Sprintf("testnet_drop_%s_%d", proto, port)
	out := ns.Run(t, "nft", "list", "table", "inet", table)
	total := 0
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, mark) {
			continue
		}
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "packets" {
				var n int
				if _, err := fmt.Sscanf(f[i+1], "%d", &n); err == nil {
					total += n
				}
			}
		}
	}
	return total
}
