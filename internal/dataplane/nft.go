package dataplane

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/groupvpn/groupvpn/internal/sadb"
)

// Clear packets of covered traffic arriving from the network. The engine
// only sees what is routed into the TUN device (outgoing) and the ESP the
// raw socket reads (incoming): a clear packet from the core for a host
// behind the GM would be forwarded by the kernel untouched, so anyone on
// the core could inject traffic the group's policy says must arrive
// encrypted. IOS drops a clear packet arriving on the crypto-map interface
// that matches a permit entry; ClearIn does the same with an nftables
// table of its own:
//
//	table ip groupvpn {
//		counter clear_in_drops { }          # every drop, kept across policy changes
//		chain clear_in {
//			iifname "TUN" accept        # decrypted by the engine
//			iif "lo" accept             # the GM to itself
//			meta l4proto esp accept     # ESP: the engine's to open
//			ip saddr { LOCAL } fib saddr . iif oif exists accept
//			                            # from the GM's own LANs (-local), arriving
//			                            #   on the interface that leads back to them
//			... accept comment "GROUP entry N deny"
//			... counter counter name "clear_in_drops" drop comment "GROUP entry N permit"
//		}
//		chain input   { type filter hook input priority filter; policy accept; jump clear_in }
//		chain forward { type filter hook forward priority filter; policy accept; jump clear_in }
//	}
//
// Packets routed into the TUN device are checked too: a clear packet from
// the core for a host behind another GM, sent to this one, would otherwise
// be sealed and delivered there as the group's. So the GM's LANs must be
// its -local prefixes (Routes.Local), as its routes need anyway: their
// covered traffic, outgoing or to the GM, passes by the fib rule.
//
// The policy rules are the policy the engine applies, in its order
// (ClearInPolicy): groups by name, each group's entries in order, first
// match. The 5-tuple is matched as the engine matches a decrypted packet
// (sadb.Lookup on the packet as it is, not mirrored): a clear packet is
// dropped exactly when, had it arrived as ESP of the group, the engine would
// have delivered it. A deny entry accepts; a permit entry drops, unless the
// engine itself passes that traffic in the clear: fail-open while the group
// holds no TEK that can send, and receive-only TEKs (IOS's receive-only is
// the first step of a migration to encryption: the GM still accepts clear
// traffic, as its peers may not encrypt yet). A receive-only TEK held
// accepts clear traffic for its entries from the moment it is installed
// until it expires, not only between its ATD and the next TEK's: the
// members reach the ATD of a rekey at slightly different times, and a
// peer that already sends in the clear must not be dropped by one that
// does not yet (or, turning receive-only off, no longer). A fail-close group without a
// TEK drops, as it does outgoing: the bootstrap policy installed before the
// first registration (internal/gm.Bootstrap) drops everything arriving in the
// clear but its GDOI traffic.
//
// Apply replaces the whole table in one `nft -f` transaction (atomic: no
// packet sees half a policy); only the named counter survives it.

// ClearInTable is the default name of ClearIn's table (family ip).
const ClearInTable = "groupvpn"

// ClearInCounter is the name of the table's counter of dropped packets.
const ClearInCounter = "clear_in_drops"

// MaxClearInRules bounds the policy rules of the table: beyond it the rest
// of the policy is left out (those packets are accepted, as before this
// table existed). tmd bounds each group's policy (tmd.MaxPolicyEntries,
// 1024); 16 groups at that bound fit.
const MaxClearInRules = 16 * 1024

// nftTimeout bounds one run of nft(8).
const nftTimeout = 10 * time.Second

// ClearInRule is one entry of the policy the engine applies, with what a
// clear packet it selects gets.
type ClearInRule struct {
	Group string
	Index int // the entry's position in the group's policy, from 1
	Entry sadb.PolicyEntry
	// Drop: the engine would only accept this traffic as ESP.
	Drop bool
}

// ClearInPolicy returns the policy the engine with these Keys and
// configured groups applies at now, in its order (as Engine.Refresh builds
// its snapshot): the groups configured and those with TEKs, by name; a
// group's policy or, when it keeps none, one permit entry per TEK
// selector. Entries that cannot match an IPv4 packet are left out.
func ClearInPolicy(keys Keys, groups []string, now time.Time) []ClearInRule {
	byGroup := map[string][]*sa{}
	for _, g := range groups {
		byGroup[g] = nil
	}
	for _, t := range keys.TEKs() {
		byGroup[t.Group] = append(byGroup[t.Group], &sa{tek: t})
	}
	names := make([]string, 0, len(byGroup))
	for g := range byGroup {
		names = append(names, g)
	}
	slices.Sort(names)
	var out []ClearInRule
	for _, name := range names {
		sas := byGroup[name]
		slices.SortStableFunc(sas, newestFirst)
		policy := keys.Policy(name)
		if len(policy) == 0 {
			policy = selectorPolicy(sas)
		}
		fail := keys.FailMode(name)
		for i, p := range policy {
			if !p.Src.IsValid() || !p.Dst.IsValid() || !p.Src.Addr().Is4() || !p.Dst.Addr().Is4() {
				continue
			}
			r := ClearInRule{Group: name, Index: i + 1, Entry: p}
			if p.Action == sadb.Protect {
				var cands []*sa
				for _, s := range sas {
					if sameSelector(s.tek, p) {
						cands = append(cands, s)
					}
				}
				if len(cands) == 0 {
					cands = sas
				}
				s, ro := sending(cands, now)
				r.Drop = (s != nil && !holdsReceiveOnly(cands, now)) || (s == nil && !ro && fail == sadb.FailClose)
			}
			out = append(out, r)
		}
	}
	return out
}

// holdsReceiveOnly reports whether cands has a receive-only SA still
// accepted at now, whatever its SendFrom.
func holdsReceiveOnly(cands []*sa, now time.Time) bool {
	for _, c := range cands {
		if c.tek.ReceiveOnly && accepting(c.tek, now) {
			return true
		}
	}
	return false
}

// ClearIn keeps the nftables table that drops clear packets of covered
// traffic arriving from the network.
type ClearIn struct {
	Table string // the table's name, family ip ("": ClearInTable)
	TUN   string // the engine's TUN device
	// Local are the GM's own LANs (Routes.Local): packets from them,
	// arriving on the interface their route leaves by, are not checked.
	Local []netip.Prefix
	// NFT runs nft(8) with args and stdin, returning its output (nil:
	// exec "nft" in the calling thread's namespace).
	NFT func(stdin string, args ...string) ([]byte, error)
}

func (c *ClearIn) defaults() {
	if c.Table == "" {
		c.Table = ClearInTable
	}
	if c.NFT == nil {
		c.NFT = func(stdin string, args ...string) ([]byte, error) {
			// tmd asks for the counter while it answers a client:
			// never wait on nft for long.
			ctx, cancel := context.WithTimeout(context.Background(), nftTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, "nft", args...)
			cmd.Stdin = strings.NewReader(stdin)
			out, err := cmd.Output()
			if err != nil {
				msg := ""
				if ee, ok := err.(*exec.ExitError); ok {
					msg = strings.TrimSpace(string(ee.Stderr))
				}
				return nil, fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, msg)
			}
			return out, nil
		}
	}
}

// Ruleset returns the nft -f text that replaces the table with one
// enforcing rules, and whether rules had to be cut at MaxClearInRules.
// Accept rules after the last drop rule are left out (the chain accepts
// what no rule decides).
func (c *ClearIn) Ruleset(rules []ClearInRule) (text string, truncated bool) {
	c.defaults()
	if len(rules) > MaxClearInRules {
		rules, truncated = rules[:MaxClearInRules], true
	}
	last := -1
	for i, r := range rules {
		if r.Drop {
			last = i
		}
	}
	rules = rules[:last+1]
	var b strings.Builder
	tbl := "ip " + c.Table
	// Declare (a no-op when it exists), then empty the chains: one
	// transaction, so the counter object survives and no packet sees an
	// empty chain.
	fmt.Fprintf(&b, "table %s {\n\tcounter %s {\n\t}\n\tchain clear_in {\n\t}\n", tbl, ClearInCounter)
	b.WriteString("\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n")
	b.WriteString("\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t}\n}\n")
	for _, ch := range []string{"clear_in", "input", "forward"} {
		fmt.Fprintf(&b, "flush chain %s %s\n", tbl, ch)
	}
	fmt.Fprintf(&b, "table %s {\n\tchain clear_in {\n", tbl)
	fmt.Fprintf(&b, "\t\tiifname %s accept\n", nftString(c.TUN))
	b.WriteString("\t\tiif \"lo\" accept\n")
	b.WriteString("\t\tmeta l4proto esp accept\n")
	var local []string
	for _, l := range c.Local {
		if l.Addr().Is4() {
			local = append(local, l.Masked().String())
		}
	}
	if len(local) > 0 {
		fmt.Fprintf(&b, "\t\tip saddr { %s } fib saddr . iif oif exists accept\n", strings.Join(local, ", "))
	}
	for _, r := range rules {
		b.WriteString("\t\t")
		b.WriteString(nftMatch(r.Entry))
		verdict := "accept"
		if r.Drop {
			verdict = fmt.Sprintf("counter counter name %q drop", ClearInCounter)
		}
		fmt.Fprintf(&b, "%s comment %s\n", verdict, nftString(fmt.Sprintf("%s entry %d %s", r.Group, r.Index, r.Entry.Action)))
	}
	b.WriteString("\t}\n")
	b.WriteString("\tchain input {\n\t\tjump clear_in\n\t}\n")
	b.WriteString("\tchain forward {\n\t\tjump clear_in\n\t}\n}\n")
	return b.String(), truncated
}

// nftMatch is the selector of a policy entry as nft matches, each followed
// by a space: what sadb.PolicyEntry.Matches selects of an IPv4 packet
// (ports of TCP, UDP and SCTP; a non-first fragment has none, and nft's
// th matches nothing in it, as the engine's port 0 matches no entry with a
// port).
func nftMatch(e sadb.PolicyEntry) string {
	var b strings.Builder
	if e.Src.Bits() != 0 {
		fmt.Fprintf(&b, "ip saddr %s ", e.Src.Masked())
	}
	if e.Dst.Bits() != 0 {
		fmt.Fprintf(&b, "ip daddr %s ", e.Dst.Masked())
	}
	switch {
	case e.IPProto != 0:
		fmt.Fprintf(&b, "meta l4proto %d ", e.IPProto)
	case e.SrcPort != 0 || e.DstPort != 0:
		b.WriteString("meta l4proto { 6, 17, 132 } ")
	}
	if e.SrcPort != 0 {
		fmt.Fprintf(&b, "th sport %d ", e.SrcPort)
	}
	if e.DstPort != 0 {
		fmt.Fprintf(&b, "th dport %d ", e.DstPort)
	}
	return b.String()
}

// nftString quotes s for nft: characters other than letters, digits and
// " ._-/:" become '_' (group names come from configuration), at most 100.
func nftString(s string) string {
	b := []byte(s)
	if len(b) > 100 {
		b = b[:100]
	}
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(" ._-/:", c) >= 0
		if !ok {
			b[i] = '_'
		}
	}
	return strconv.Quote(string(b))
}

// Apply replaces the table with one enforcing rules (ClearInPolicy), in one
// transaction. It returns whether the rules were cut at MaxClearInRules.
func (c *ClearIn) Apply(rules []ClearInRule) (truncated bool, err error) {
	text, truncated := c.Ruleset(rules)
	if _, err := c.NFT(text, "-f", "-"); err != nil {
		return truncated, fmt.Errorf("dataplane: clear-packet table: %w", err)
	}
	return truncated, nil
}

// Remove deletes the table (also one a killed tmd left behind); a table
// that is not there is no error.
func (c *ClearIn) Remove() error {
	c.defaults()
	// "add" then "delete" in one transaction: no error when absent.
	text := fmt.Sprintf("table ip %s {\n}\ndelete table ip %s\n", c.Table, c.Table)
	if _, err := c.NFT(text, "-f", "-"); err != nil {
		return fmt.Errorf("dataplane: remove clear-packet table: %w", err)
	}
	return nil
}

// Drops returns the packets the table has dropped (its named counter).
func (c *ClearIn) Drops() (uint64, error) {
	c.defaults()
	out, err := c.NFT("", "-j", "list", "counter", "ip", c.Table, ClearInCounter)
	if err != nil {
		return 0, fmt.Errorf("dataplane: clear-packet drops: %w", err)
	}
	return parseNftCounter(out)
}

// parseNftCounter reads the packets of the (first) counter object in nft's
// JSON output.
func parseNftCounter(b []byte) (uint64, error) {
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Name    string `json:"name"`
				Packets uint64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return 0, fmt.Errorf("dataplane: nft counter: %w", err)
	}
	for _, o := range doc.Nftables {
		if o.Counter != nil {
			return o.Counter.Packets, nil
		}
	}
	return 0, fmt.Errorf("dataplane: nft counter: none in the output")
}
