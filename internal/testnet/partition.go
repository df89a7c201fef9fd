package testnet

import (
	"bytes"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Cut is a partition made by Partition: the packets a router namespace
// forwards between two addresses are dropped until Heal.
type Cut struct {
	t      testing.TB
	ns     *Netns
	table  string
	healed bool
}

// Partition makes router namespace ns drop (nftables, forward hook) every
// IPv4 packet it forwards from a to b or from b to a, and nothing else:
// hosts on either side still reach everything else through ns, so two key
// servers can be cut apart while their members still reach them. Heal
// removes the rules; the test's cleanup does too.
func Partition(t testing.TB, ns *Netns, a, b netip.Addr) *Cut {
	t.Helper()
	RequireNft(t)
	if !a.Is4() || !b.Is4() || a == b {
		t.Fatalf("testnet: Partition: %s and %s must be two IPv4 addresses", a, b)
	}
	h := a.As4()
	table := fmt.Sprintf("testnet_cut_%d_%d", h[3], b.As4()[3])
	_, _ = run("ip", "netns", "exec", ns.Name, "nft", "delete", "table", "ip", table)
	rules := fmt.Sprintf(`table ip %[1]s {
	chain forward {
		type filter hook forward priority filter; policy accept;
		ip saddr %[2]s ip daddr %[3]s counter drop
		ip saddr %[3]s ip daddr %[2]s counter drop
	}
}
`, table, a, b)
	cmd := ns.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("testnet: Partition in %s: nft -f: %v: %s\n%s", ns.Name, err, strings.TrimSpace(out.String()), rules)
	}
	c := &Cut{t: t, ns: ns, table: table}
	t.Cleanup(func() {
		if !c.healed {
			_, _ = run("ip", "netns", "exec", ns.Name, "nft", "delete", "table", "ip", table)
		}
	})
	return c
}

var cutCounter = regexp.MustCompile(`counter packets (\d+)`)

// Dropped is the number of packets the cut has dropped so far (both
// directions), for a test to show the partition held.
func (c *Cut) Dropped() int {
	c.t.Helper()
	out, err := run("ip", "netns", "exec", c.ns.Name, "nft", "list", "table", "ip", c.table)
	if err != nil {
		c.t.Fatalf("testnet: Cut.Dropped: %v", err)
	}
	n := 0
	for _, m := range cutCounter.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.Atoi(m[1])
		n += v
	}
	return n
}

// Heal removes the cut.
func (c *Cut) Heal() {
	c.t.Helper()
	if c.healed {
		return
	}
	if _, err := run("ip", "netns", "exec", c.ns.Name, "nft", "delete", "table", "ip", c.table); err != nil {
		c.t.Fatalf("testnet: Cut.Heal: %v", err)
	}
	c.healed = true
}
