package dataplane

import (
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/groupvpn/groupvpn/internal/sadb"
)

// Routes is the Linux policy routing a GM running the engine needs. With
// address preservation an ESP packet's destination is a host behind the GM,
// so the kernel would forward it; and the clear packets of the protected
// prefixes must be routed into the TUN device, but not the engine's own
// outer packets, which carry the same addresses. Install adds, in this
// order of preference:
//
//	ip rule add pref P   fwmark MARK lookup main        # the engine's own packets (SO_MARK)
//	ip rule add pref P+1 iif lo ipproto esp lookup main # ESP sent from this host, and the
//	                                                    #   source check of received ESP
//	ip rule add pref P+2 ipproto esp lookup LOCAL       # all received ESP is delivered locally
//	ip route add local 0.0.0.0/0 dev lo table LOCAL     #   (where the raw ESP socket reads it)
//	ip rule add pref P+3 iif TUN lookup main            # decrypted packets go where main routes them
//	ip rule add pref P+4 lookup TUNTABLE                # protected destinations go into the TUN
//	ip route add DST dev TUN table TUNTABLE             #   one per Protect destination
//	ip route add throw LAN table TUNTABLE               #   except the GM's own LANs
//
// The rule at P+1 matters: the kernel checks the source of a received
// packet with a reverse lookup from lo, and a reverse lookup answered by the
// local route of P+2 makes the packet a martian (dropped without a counter).
//
// The cost of the ESP rule: every ESP packet reaching the GM, also ESP of
// other parties merely routed through it, is taken by the engine (and
// dropped, counted as no_sa, when its SPI is not a group's).
type Routes struct {
	TUN       string // the TUN device's name
	Mark      uint32 // the engine's SO_MARK (Config.Mark), not 0
	Pref      int    // the first rule's preference (0: 1000)
	LocalESP  int    // table of the local route for ESP (0: 1000)
	TunTable  int    // table of the protected destinations (0: 1001)
	Protected []netip.Prefix
	// Local are the prefixes the GM reaches directly (its LANs): never
	// routed into the TUN even when a Protect destination covers them.
	Local []netip.Prefix
	// Src, when valid, is the source address of the GM's own packets
	// routed into the TUN (the TUN device has no address): its address on
	// a protected LAN, so that its own traffic is the policy's too.
	Src netip.Addr
	// Direct are the entries whose traffic rules route by the main table
	// (direct.go: the GM's GDOI traffic while a fail-close bootstrap routes
	// everything into the TUN); SetDirect keeps them.
	Direct []sadb.PolicyEntry
	// IP runs the ip(8) command (nil: exec "ip" in the caller's thread's
	// namespace).
	IP func(args ...string) error
}

func (r *Routes) defaults() {
	if r.Pref == 0 {
		r.Pref = 1000
	}
	if r.LocalESP == 0 {
		r.LocalESP = 1000
	}
	if r.TunTable == 0 {
		r.TunTable = 1001
	}
	if r.IP == nil {
		r.IP = func(args ...string) error {
			out, err := exec.Command("ip", args...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
			}
			return nil
		}
	}
}

func (r *Routes) rules() [][]string {
	p := func(i int) string { return strconv.Itoa(r.Pref + i) }
	return [][]string{
		{"pref", p(0), "fwmark", strconv.FormatUint(uint64(r.Mark), 10), "lookup", "main"},
		{"pref", p(1), "iif", "lo", "ipproto", "esp", "lookup", "main"},
		{"pref", p(2), "ipproto", "esp", "lookup", strconv.Itoa(r.LocalESP)},
		{"pref", p(3), "iif", r.TUN, "lookup", "main"},
		{"pref", p(4), "lookup", strconv.Itoa(r.TunTable)},
	}
}

// Install adds the rules and routes; on error it removes what it added.
func (r *Routes) Install() error {
	r.defaults()
	if r.Mark == 0 || r.TUN == "" {
		return fmt.Errorf("dataplane: routes need a TUN device and a mark")
	}
	cmds := [][]string{
		{"link", "set", "dev", r.TUN, "up"},
		{"route", "replace", "local", "0.0.0.0/0", "dev", "lo", "table", strconv.Itoa(r.LocalESP)},
	}
	for _, d := range r.Protected {
		c := []string{"route", "replace", d.Masked().String(), "dev", r.TUN, "table", strconv.Itoa(r.TunTable)}
		if r.Src.IsValid() {
			c = append(c, "src", r.Src.String())
		}
		cmds = append(cmds, c)
	}
	for _, l := range r.Local {
		cmds = append(cmds, []string{"route", "replace", "throw", l.Masked().String(), "table", strconv.Itoa(r.TunTable)})
	}
	for _, rule := range r.rules() {
		cmds = append(cmds, append([]string{"rule", "add"}, rule...))
	}
	for _, c := range cmds {
		if err := r.IP(c...); err != nil {
			r.Remove()
			return fmt.Errorf("dataplane: install routes: %w", err)
		}
	}
	return nil
}

// Remove deletes the rules and flushes the two tables; it keeps going past
// errors (what was never added) and returns the first.
func (r *Routes) Remove() error {
	r.defaults()
	var first error
	for _, rule := range r.rules() {
		if err := r.IP(append([]string{"rule", "del"}, rule...)...); err != nil && first == nil {
			first = err
		}
	}
	r.removeDirect()
	for _, t := range []int{r.LocalESP, r.TunTable} {
		if err := r.IP("route", "flush", "table", strconv.Itoa(t)); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// SetProtected makes the routes into the TUN device those of protected,
// after Install: the destinations no longer protected are removed, the new
// ones added (the policy changes with every rekey). On error Protected is
// what was done so far.
func (r *Routes) SetProtected(protected []netip.Prefix) error {
	r.defaults()
	table := strconv.Itoa(r.TunTable)
	want := map[netip.Prefix]bool{}
	for _, d := range protected {
		want[d.Masked()] = true
	}
	var kept []netip.Prefix
	var first error
	// Make before break: the new routes first, then the old ones go.
	// Deleting first would route the traffic a widened destination
	// replaces (10.10.0.0/16 by 10.8.0.0/13) by the main table, in the
	// clear, between the two commands.
	var stale []netip.Prefix
	for _, d := range r.Protected {
		d = d.Masked()
		if want[d] {
			kept = append(kept, d)
			delete(want, d)
			continue
		}
		stale = append(stale, d)
	}
	for _, d := range protected {
		d = d.Masked()
		if !want[d] {
			continue
		}
		delete(want, d)
		c := []string{"route", "replace", d.String(), "dev", r.TUN, "table", table}
		if r.Src.IsValid() {
			c = append(c, "src", r.Src.String())
		}
		if err := r.IP(c...); err != nil {
			if first == nil {
				first = fmt.Errorf("dataplane: add route: %w", err)
			}
			continue
		}
		kept = append(kept, d)
	}
	for _, d := range stale {
		if err := r.IP("route", "del", d.String(), "dev", r.TUN, "table", table); err != nil {
			kept = append(kept, d)
			if first == nil {
				first = fmt.Errorf("dataplane: remove route: %w", err)
			}
		}
	}
	slices.SortFunc(kept, func(a, b netip.Prefix) int { return a.Compare(b) })
	r.Protected = kept
	return first
}
