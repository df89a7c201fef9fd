// Package show renders a node's state in the layouts GET VPN operators
// know from Cisco IOS (`show crypto gdoi`, `show crypto gdoi ks members`,
// `show crypto gdoi gm`, `show crypto ipsec sa`). It only formats: the data
// comes from node.Snapshot, and each function returns the text and the
// value `| json` prints.
package show

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/tmd"
	"github.com/groupvpn/groupvpn/isakmp"
)

func secs(d time.Duration) int64 {
	if d < 0 {
		return 0
	}
	return int64(d / time.Second)
}

// transformName is the IOS transform-set spelling of a TEK's transform.
func transformName(tr uint8, authAlg uint16) string {
	var parts []string
	switch isakmp.ESPTransform(tr) {
	case isakmp.ESPAESCBC:
		parts = append(parts, "esp-aes")
	case isakmp.ESPAESGCM8, isakmp.ESPAESGCM12, isakmp.ESPAESGCM16:
		parts = append(parts, "esp-gcm")
	case isakmp.ESPAESGMAC:
		parts = append(parts, "esp-gmac")
	default:
		parts = append(parts, isakmp.ESPTransform(tr).String())
	}
	switch authAlg {
	case isakmp.AuthAlgHMACSHA1:
		parts = append(parts, "esp-sha-hmac")
	case isakmp.AuthAlgHMACSHA256:
		parts = append(parts, "esp-sha256-hmac")
	case isakmp.AuthAlgHMACSHA384:
		parts = append(parts, "esp-sha384-hmac")
	case isakmp.AuthAlgHMACSHA512:
		parts = append(parts, "esp-sha512-hmac")
	}
	return strings.Join(parts, " ")
}

// wildcard renders a prefix as IOS "address wildcard" (or any / host).
func wildcard(p netip.Prefix) string {
	switch {
	case !p.IsValid() || p.Bits() == 0:
		return "any"
	case p.Bits() == p.Addr().BitLen():
		return "host " + p.Addr().String()
	case p.Addr().Is4():
		m := ^uint32(0) >> p.Bits()
		return fmt.Sprintf("%s %d.%d.%d.%d", p.Addr(), m>>24, m>>16&0xff, m>>8&0xff, m&0xff)
	}
	return p.String()
}

func ace(proto uint8, src, dst netip.Prefix, srcPort, dstPort uint16) string {
	return aceAct("permit", proto, src, dst, srcPort, dstPort)
}

// aceAct renders an access-list entry as IOS does, with its action.
func aceAct(act string, proto uint8, src, dst netip.Prefix, srcPort, dstPort uint16) string {
	s := act + " " + protoName(proto) + " " + wildcard(src)
	if srcPort != 0 {
		s += fmt.Sprintf(" eq %d", srcPort)
	}
	s += " " + wildcard(dst)
	if dstPort != 0 {
		s += fmt.Sprintf(" eq %d", dstPort)
	}
	return s
}

// GDOI renders `show crypto gdoi`: every group this node serves or joins.
func GDOI(s node.Snapshot) (string, any) {
	var b strings.Builder
	b.WriteString("GROUP INFORMATION\n\n")
	for _, g := range s.KS {
		name := g.Name
		if g.Unicast {
			name += " (Unicast)"
		}
		fmt.Fprintf(&b, "    Group Name               : %s\n", name)
		fmt.Fprintf(&b, "    Group Identity           : %d\n", g.ID)
		b.WriteString("    Group Type               : GDOI (ISAKMP)\n")
		b.WriteString("    Crypto Path              : ipv4\n")
		b.WriteString("    Key Management Path      : ipv4\n")
		fmt.Fprintf(&b, "    Group Members            : %d\n", memberCount(g))
		b.WriteString("    IPSec SA Direction       : Both\n")
		redundancy(&b, s, g)
		fmt.Fprintf(&b, "    Group Rekey Lifetime     : %d secs\n", secs(g.KEKLifetime))
		fmt.Fprintf(&b, "    Group Rekey\n        Remaining Lifetime   : %d secs\n", secs(g.KEKExpire.Sub(s.Now)))
		fmt.Fprintf(&b, "    Rekey Retransmit Period  : %d secs\n", secs(g.Retransmit))
		fmt.Fprintf(&b, "    Rekey Retransmit Attempts: %d\n", g.Retransmits)
		fmt.Fprintf(&b, "    Rekey Sequence Number    : %d\n", g.Seq)
		if a, ok := s.Unserved[g.Name]; ok {
			fmt.Fprintf(&b, "    KS Address               : %s NOT SERVED (no local socket has it: rekeys held)\n", a)
		}
		for i, t := range g.TEKs {
			fmt.Fprintf(&b, "\n    IPSec SA Number        : %d\n", i+1)
			fmt.Fprintf(&b, "    IPSec SA Rekey Lifetime: %d secs\n", secs(t.Lifetime))
			if t.ProfileName != "" {
				fmt.Fprintf(&b, "    Profile Name           : %s\n", t.ProfileName)
			}
			fmt.Fprintf(&b, "    Transform              : %s\n", transformName(uint8(t.Transform), t.AuthAlg))
			switch t.Replay {
			case isakmp.ReplayTime:
				b.WriteString("    Replay method          : Time Based\n")
				fmt.Fprintf(&b, "    Replay Window Size     : %d\n", t.ReplayWindow)
			case isakmp.ReplayCounter:
				b.WriteString("    Replay method          : Count Based\n")
				fmt.Fprintf(&b, "    Replay Window Size     : %d\n", t.ReplayWindow)
			case isakmp.ReplayNone:
				b.WriteString("    Replay method          : Disabled\n")
			}
			fmt.Fprintf(&b, "    SA Rekey\n       Remaining Lifetime  : %d secs\n", secs(t.Expires.Sub(s.Now)))
			if t.ACLName != "" {
				// IOS names the match address ACL; its entries are in
				// `show crypto gdoi ks acl` and `show ip access-lists`.
				fmt.Fprintf(&b, "    ACL Configured         : access-list %s\n", t.ACLName)
				continue
			}
			for _, d := range t.BypassBefore {
				fmt.Fprintf(&b, "    ACL Configured         : access-list %s\n", aceAct("deny", d.Proto, d.Src, d.Dst, d.SrcPort, d.DstPort))
			}
			fmt.Fprintf(&b, "    ACL Configured         : access-list %s\n", ace(t.Selector.Proto, t.Selector.Src, t.Selector.Dst, t.Selector.SrcPort, t.Selector.DstPort))
			for _, d := range t.BypassAfter {
				fmt.Fprintf(&b, "    ACL Configured         : access-list %s\n", aceAct("deny", d.Proto, d.Src, d.Dst, d.SrcPort, d.DstPort))
			}
		}
		b.WriteString("\n    Group Server list      : Local\n\n")
	}
	for _, m := range s.GM {
		fmt.Fprintf(&b, "    Group Name               : %s\n", m.Group)
		fmt.Fprintf(&b, "    Group Identity           : %d\n", m.ID)
		b.WriteString("    Crypto Path              : ipv4\n")
		b.WriteString("    Key Management Path      : ipv4\n")
		fmt.Fprintf(&b, "    Rekeys received          : %d\n", m.Rekeys.Received)
		b.WriteString("    IPSec SA Direction       : Both\n\n")
		var servers []string
		for _, a := range m.Servers {
			servers = append(servers, a.Addr().String())
		}
		fmt.Fprintf(&b, "     Group Server list       : %s\n\n", strings.Join(servers, ", "))
		gmInfo(&b, s, m)
		downloadedACL(&b, m)
	}
	return b.String(), GDOIView(s)
}

// localAddr is the address this node registers with to group's KS
// (0.0.0.0 when it is not a member of group).
func localAddr(s node.Snapshot, group string) string {
	for _, m := range s.GM {
		if m.Group != group {
			continue
		}
		for _, a := range s.Addrs {
			if a.Addr().Is4() == m.KS.Addr().Is4() {
				return a.Addr().String()
			}
		}
	}
	return "0.0.0.0"
}

func gmInfo(b *strings.Builder, s node.Snapshot, m node.MemberState) {
	fmt.Fprintf(b, "    Group Member Information For Group %s:\n", m.Group)
	local := ""
	for _, a := range s.Addrs {
		if a.Addr().Is4() == m.KS.Addr().Is4() {
			local = a.String()
			break
		}
	}
	fmt.Fprintf(b, "    Group member             : %s\n", strings.Split(local, ":")[0])
	fmt.Fprintf(b, "       Local addr/port       : %s\n", strings.Replace(local, ":", "/", 1))
	fmt.Fprintf(b, "       Remote addr/port      : %s/%d\n", m.KS.Addr(), m.KS.Port())
	fmt.Fprintf(b, "       Version               : %s\n", s.Version)
	status := map[string]string{"registered": "Registered", "registering": "Registering", "phase 1": "Registering", "idle": "Not registered"}[m.State]
	fmt.Fprintf(b, "       Registration status   : %s\n", status)
	if m.State == "registered" {
		fmt.Fprintf(b, "       Registered with       : %s\n", m.KS.Addr())
		fmt.Fprintf(b, "       Re-registers in       : %d sec\n", secs(m.Reregister.Sub(s.Now)))
	}
	fmt.Fprintf(b, "       Succeeded registration: %d\n", m.Registrations)
	fmt.Fprintf(b, "       Attempted registration: %d\n", m.Registrations+m.Failures)
	if m.LastError != "" {
		fmt.Fprintf(b, "       Last error            : %s\n", m.LastError)
	}
	fmt.Fprintf(b, "       Last rekey seq num    : %d\n", m.Seq)
	fmt.Fprintf(b, "       Rekeys received       : %d\n", m.Rekeys.Received)
	fmt.Fprintf(b, "       Rekey ACKs sent       : %d\n", m.Rekeys.AcksSent)
	if n := m.Rekeys.Replayed + m.Rekeys.Rejected; n > 0 {
		fmt.Fprintf(b, "       Rekeys rejected       : %d (replayed %d, bad %d)\n", n, m.Rekeys.Replayed, m.Rekeys.Rejected)
	}
	n := 0
	for _, t := range s.TEKs {
		if t.Group == m.Group && s.Now.Before(t.Expires) {
			n++
		}
	}
	fmt.Fprintf(b, "       Active TEK Number     : %d\n", n)
	mode := s.FailModes[m.Group]
	state := "Disabled (fail-open: clear traffic passes while no TEK is held)"
	switch {
	case mode == sadb.FailClose && m.FailCloseBootstrap:
		state = "Activated, in force (no key server policy yet: everything is dropped except the fail-close ACL's deny entries and GDOI to the key servers)"
	case mode == sadb.FailClose:
		state = "Activated (traffic the policy covers is dropped while no TEK is held)"
	}
	fmt.Fprintf(b, "       Fail-Close            : %s\n\n", state)
}

// downloadedACL lists the policy the member downloaded, in ACL order
// (deny: passed in the clear, permit: encrypted; SPEC E3).
func downloadedACL(b *strings.Builder, m node.MemberState) {
	if len(m.ACL) == 0 {
		return
	}
	fmt.Fprintf(b, "    ACL Downloaded From KS %s:\n", m.ACLFrom)
	for _, e := range m.ACL {
		fmt.Fprintf(b, "      access-list  %s\n", aceAct(e.Action.String(), e.IPProto, e.Src, e.Dst, e.SrcPort, e.DstPort))
	}
	b.WriteString("\n")
}

// memberCount is the number of g's members, listed or only counted
// (node.StateCounts).
func memberCount(g ks.GroupSnapshot) int { return max(g.MemberCount, len(g.Members)) }

// KSMembers renders `show crypto gdoi ks members` (as one string: the
// control socket streams it with WriteKSMembers).
func KSMembers(s node.Snapshot) (string, any) {
	var b strings.Builder
	WriteKSMembers(&b, s, netip.Addr{})
	return b.String(), KSMembersView(s)
}

// GM renders `show crypto gdoi gm`: registration state, KEK and TEK policy.
func GM(s node.Snapshot) (string, any) {
	var b strings.Builder
	for _, m := range s.GM {
		gmInfo(&b, s, m)
		downloadedACL(&b, m)
		for _, k := range s.KEKs {
			if k.Group != m.Group {
				continue
			}
			b.WriteString("KEK POLICY:\n")
			if k.Multicast.IsValid() {
				fmt.Fprintf(&b, "    Rekey Transport Type     : Multicast (group %s)\n", k.Multicast.Addr())
			} else {
				b.WriteString("    Rekey Transport Type     : Unicast\n")
			}
			fmt.Fprintf(&b, "    Lifetime (secs)          : %d\n", secs(k.Expires.Sub(s.Now)))
			fmt.Fprintf(&b, "    Encrypt Algorithm        : %s\n", strings.TrimPrefix(k.Alg.String(), "KEK_ALG_"))
			fmt.Fprintf(&b, "    Key Size                 : %d\n", k.KeyBits)
			fmt.Fprintf(&b, "    Sig Algorithm            : %s\n", strings.TrimPrefix(k.SigAlg.String(), "SIG_ALG_"))
			fmt.Fprintf(&b, "    KEK SPI                  : %x\n\n", k.SPI)
		}
		b.WriteString("TEK POLICY for the current KS-Policy ACEs Downloaded:\n")
		for _, t := range s.TEKs {
			if t.Group != m.Group {
				continue
			}
			tek(&b, s, t)
		}
		b.WriteString("\n")
	}
	return b.String(), GMView(s)
}

func tek(b *strings.Builder, s node.Snapshot, t sadb.TEK) {
	fmt.Fprintf(b, "    IPsec SA:\n        spi: 0x%08X(%d)\n", t.SPI, t.SPI)
	fmt.Fprintf(b, "        transform: %s\n", transformName(t.Transform, t.AuthAlg))
	fmt.Fprintf(b, "        sa timing:remaining key lifetime (sec): (%d)\n", secs(t.Expires.Sub(s.Now)))
	fmt.Fprintf(b, "        acl: %s\n", ace(t.IPProto, t.Src, t.Dst, t.SrcPort, t.DstPort))
	if t.ReceiveOnly {
		b.WriteString("        direction: receive only\n")
	}
	if t.SendFrom.After(s.Now) {
		fmt.Fprintf(b, "        outbound from: in %d sec (activation time delay)\n", secs(t.SendFrom.Sub(s.Now)))
	}
	if !t.Deactivate.IsZero() {
		fmt.Fprintf(b, "        inbound until: in %d sec (replaced; deactivation time delay)\n", secs(t.Deactivate.Sub(s.Now)))
	}
	switch t.ReplayMethod {
	case isakmp.ReplayTime:
		fmt.Fprintf(b, "        Anti-Replay(Time Based) : %d sec interval\n", t.ReplayWindow)
	case isakmp.ReplayCounter:
		fmt.Fprintf(b, "        Anti-Replay(Counter Based) : %d\n", t.ReplayWindow)
	case isakmp.ReplayNone:
		b.WriteString("        Anti-Replay : disabled\n")
	}
	fmt.Fprintf(b, "        alg key size: %d (bytes)\n", len(t.EncKey))
	if len(t.AuthKey) > 0 {
		fmt.Fprintf(b, "        sig key size: %d (bytes)\n", len(t.AuthKey))
	}
	if len(t.SenderIDs) > 0 {
		fmt.Fprintf(b, "        sender IDs: %v (%d bits)\n", t.SenderIDs, t.SIDBits)
	}
	b.WriteString("        encaps: ENCAPS_TUNNEL\n")
}

// IPsecCounters are what tmd's data plane counts, for `show crypto ipsec
// sa`: each TEK's packets, and the engine's counters when tmd runs one.
type IPsecCounters struct {
	SAs       []tmd.TEKCounters
	DataPlane *tmd.DataPlaneCounters
	// Err says why tmd could not be asked (the counters are then absent).
	Err string
}

// CryptoMapRef is where the configuration attaches a group: the crypto
// map naming it and the interface carrying that map.
type CryptoMapRef struct {
	Map, Interface string
}

// IPsecSAWith renders `show crypto ipsec sa` without the configuration's
// crypto maps (IPsecSAAt).
func IPsecSAWith(s node.Snapshot, c *IPsecCounters) (string, any) { return IPsecSAAt(s, c, nil) }

// IPsecSAAt renders `show crypto ipsec sa`: each group SA, inbound and
// outbound (a group SA is both), with its packet counters from c (nil or
// a TEK c has none for: zeros, and no "counters" in `| json`). The
// engine-wide drops (ESP of no SA, fail-close drops) head the list when
// tmd runs the data plane.
//
// As IOS, each SA is headed by the interface that encrypts (the data
// plane's device when tmd reports one, else the configured interface
// carrying the group's crypto map) and the crypto map tag with the
// member's local address; maps gives the map and interface per group.
func IPsecSAAt(s node.Snapshot, c *IPsecCounters, maps map[string]CryptoMapRef) (string, any) {
	var b strings.Builder
	if s.SADB != "" {
		fmt.Fprintf(&b, "SA database: %s\n", s.SADB)
		if s.SADBErr != "" {
			fmt.Fprintf(&b, "  (unreachable: %s; showing isakmpd's copy)\n", s.SADBErr)
		}
		if c != nil && c.Err != "" {
			fmt.Fprintf(&b, "  (counters not read: %s)\n", c.Err)
		}
		b.WriteString("\n")
	}
	byKey := map[string]tmd.SACounters{}
	if c != nil {
		for _, k := range c.SAs {
			byKey[fmt.Sprintf("%s/%d", k.Group, k.SPI)] = k.SACounters
		}
		if dp := c.DataPlane; dp != nil {
			v := map[string]uint64{}
			clearIn := false
			for _, k := range dp.Counters {
				v[k.Name] = k.Value
				clearIn = clearIn || k.Name == "clear_in_drops"
			}
			fmt.Fprintf(&b, "Data plane: tmd, interface %s\n", dp.Device)
			fmt.Fprintf(&b, "    #pkts no sa (rcv): %d, #pkts fail-close drops (send): %d\n", v["no_sa"], v["fail_close_drops"])
			fmt.Fprintf(&b, "    #pkts clear (deny entries): %d, #pkts clear (fail-open): %d, #pkts clear (receive-only): %d\n",
				v["bypass"], v["fail_open_clear"], v["receive_only_clear"])
			fmt.Fprintf(&b, "    #pkts replay failed (rcv): %d, #pkts auth failed (rcv): %d, #pkts malformed: %d\n",
				v["replay"], v["auth_failures"], v["malformed"])
			fmt.Fprintf(&b, "    #pkts tbar failed (rcv): %d\n", v["tbar"])
			if clearIn {
				// tmd's nftables table: covered packets that arrived
				// in the clear from the network (absent: no table).
				fmt.Fprintf(&b, "    #pkts clear drops (rcv): %d\n", v["clear_in_drops"])
			}
			fmt.Fprintf(&b, "    #send errors %d, #recv errors %d\n\n",
				v["seal_errors"]+v["send_errors"], v["tun_errors"]+v["socket_drops"]+v["policy_mismatch"]+v["too_many_senders"])
		}
	}
	for _, t := range s.TEKs {
		k := byKey[fmt.Sprintf("%s/%d", t.Group, t.SPI)]
		ref := maps[t.Group]
		iface, tag := ref.Interface, ref.Map
		if c != nil && c.DataPlane != nil && c.DataPlane.Device != "" {
			iface = c.DataPlane.Device
		}
		if iface == "" {
			iface = "(none)"
		}
		if tag == "" {
			tag = t.Group
		}
		fmt.Fprintf(&b, "interface: %s\n    Crypto map tag: %s, local addr %s\n\n", iface, tag, localAddr(s, t.Group))
		fmt.Fprintf(&b, "   local  ident (addr/mask/prot/port): (%s/%d/%d)\n", prefixMask(t.Src), t.IPProto, t.SrcPort)
		fmt.Fprintf(&b, "   remote ident (addr/mask/prot/port): (%s/%d/%d)\n", prefixMask(t.Dst), t.IPProto, t.DstPort)
		fmt.Fprintf(&b, "   Group: %s\n   current_peer 0.0.0.0 port 848\n     PERMIT, flags={origin_is_acl,}\n", t.Group)
		fmt.Fprintf(&b, "    #pkts encaps: %d, #pkts encrypt: %d, #pkts digest: %d\n", k.EncapsPackets, k.EncapsPackets, k.EncapsPackets)
		fmt.Fprintf(&b, "    #pkts decaps: %d, #pkts decrypt: %d, #pkts verify: %d\n", k.DecapsPackets, k.DecapsPackets, k.DecapsPackets)
		fmt.Fprintf(&b, "    #pkts replay failed (rcv): %d, #pkts auth failed (rcv): %d\n", k.ReplayDrops, k.AuthFailures)
		if t.ReplayMethod == isakmp.ReplayTime {
			// Time-based anti-replay: pseudotime missing or outside the window.
			fmt.Fprintf(&b, "    #pkts tbar failed (rcv): %d\n", k.TBARDrops)
		}
		for _, dir := range []string{"inbound", "outbound"} {
			fmt.Fprintf(&b, "     %s esp sas:\n      spi: 0x%08X(%d)\n", dir, t.SPI, t.SPI)
			fmt.Fprintf(&b, "        transform: %s ,\n        in use settings ={Tunnel, }\n", transformName(t.Transform, t.AuthAlg))
			fmt.Fprintf(&b, "        sa timing: remaining key lifetime (sec): (%d)\n", secs(t.Expires.Sub(s.Now)))
		}
		b.WriteString("\n")
	}
	return b.String(), IPsecSAView(s, c, maps)
}

func prefixMask(p netip.Prefix) string {
	if p.Addr().Is4() {
		m := ^uint32(0) << (32 - p.Bits())
		if p.Bits() == 0 {
			m = 0
		}
		return fmt.Sprintf("%s/%d.%d.%d.%d", p.Addr(), m>>24, m>>16&0xff, m>>8&0xff, m&0xff)
	}
	return p.String()
}

// ISAKMPSA renders `show crypto isakmp sa`: the phase-1 SAs (the daemon
// streams it: WriteISAKMPSA).
func ISAKMPSA(s node.Snapshot) (string, any) {
	var b strings.Builder
	WriteISAKMPSA(&b, s, false)
	return b.String(), ISAKMPSAView(s)
}

// Version renders `show version`.
func Version(s node.Snapshot) (string, any) {
	host := s.Hostname
	if host == "" {
		host = "groupvpn"
	}
	text := fmt.Sprintf("groupvpn GDOI key management, version %s\nhostname %s\n", s.Version, host)
	return text, VersionView(s, Build{})
}

// KSReplay renders `show crypto gdoi ks replay`: each group's anti-replay
// policy and, with time-based anti-replay, the KS's pseudotime (SPEC T2).
func KSReplay(s node.Snapshot) (string, any) {
	var b strings.Builder
	for _, g := range s.KS {
		fmt.Fprintf(&b, "Anti-replay Information For Group %s:\n", g.Name)
		for i, t := range g.TEKs {
			fmt.Fprintf(&b, "    IPSec SA Number %d (spi 0x%08X):\n", i+1, t.SPI)
			switch t.Replay {
			case isakmp.ReplayTime:
				fmt.Fprintf(&b, "    Timebased Replay:\n    Replay Value                 : %.2f secs\n    Replay Window Size           : %d secs\n", g.Pseudotime.Seconds(), t.ReplayWindow)
				fmt.Fprintf(&b, "    Next TBAR resync rekey in    : %d secs\n", secs(g.NextResync.Sub(s.Now)))
			case isakmp.ReplayCounter:
				fmt.Fprintf(&b, "    Counter based Replay:\n    Replay Window Size           : %d\n", t.ReplayWindow)
			default:
				b.WriteString("    Replay: disabled\n")
			}
		}
		b.WriteString("\n")
	}
	return b.String(), KSReplayView(s)
}

// GMReplay renders `show crypto gdoi gm replay` without data-plane
// counters.
func GMReplay(s node.Snapshot) (string, any) { return GMReplayWith(s, nil) }

// GMReplayWith renders `show crypto gdoi gm replay`: each TEK's
// anti-replay method and window and, with time-based anti-replay, the GM's
// pseudotime now (the KS's last value plus the time since) and, when tmd's
// data plane counted the TEK (c), its packets in and out and the packets
// dropped for a pseudotime missing or outside the window (IOS's "Input
// Error Packets").
func GMReplayWith(s node.Snapshot, c *IPsecCounters) (string, any) {
	var b strings.Builder
	byKey := countersByKey(c)
	for _, m := range s.GM {
		fmt.Fprintf(&b, "Anti-replay Information For Group %s:\n", m.Group)
		for _, t := range s.TEKs {
			if t.Group != m.Group {
				continue
			}
			fmt.Fprintf(&b, "    TEK spi 0x%08X:\n", t.SPI)
			switch t.ReplayMethod {
			case isakmp.ReplayTime:
				fmt.Fprintf(&b, "    Timebased Replay:\n    Replay Value                 : %.2f secs\n    Replay Window Size           : %d secs\n", t.PseudotimeNow(s.Now).Seconds(), t.ReplayWindow)
				if k, ok := byKey[fmt.Sprintf("%s/%d", t.Group, t.SPI)]; ok {
					fmt.Fprintf(&b, "    Input Packets                : %-13d Output Packets : %d\n", k.DecapsPackets, k.EncapsPackets)
					fmt.Fprintf(&b, "    Input Error Packets          : %d (pseudotime missing or outside the window)\n", k.TBARDrops)
				}
			case isakmp.ReplayCounter:
				fmt.Fprintf(&b, "    Counter based Replay:\n    Replay Window Size           : %d\n", t.ReplayWindow)
			default:
				b.WriteString("    Replay: disabled\n")
			}
		}
		b.WriteString("\n")
	}
	return b.String(), GMReplayView(s, c)
}

func replayName(m uint16) string {
	switch m {
	case isakmp.ReplayTime:
		return "time"
	case isakmp.ReplayCounter:
		return "counter"
	}
	return "none"
}

// counterTable renders counters one a line, by their stable name, with
// what each counts.
func counterTable(b *strings.Builder, cs []ike.Counter) {
	for _, c := range cs {
		fmt.Fprintf(b, "  %-32s: %-10d %s\n", c.Name, c.Value, c.Help)
	}
}

// Section is a titled table of counters that `show crypto isakmp
// statistics` prints after the phase-1 ones: the daemon's own (control
// socket, state store, log rate limiter) and those of the processes it
// works through (iked, tmd), asked for when the command runs.
type Section struct {
	// Key is the section's `| json` key, snake_case and stable.
	Key   string
	Title string
	// Counters are the section's counters; Err, when set, says why they
	// could not be read (the section then shows only that).
	Counters []ike.Counter
	Err      string
}

// StatisticsSections are the sections of `show crypto isakmp statistics`
// that the node's Snapshot holds, in their order: the state store (a key
// server's only), the COOP announcements (a key server with redundancy
// only) and the log rate limiter.
func StatisticsSections(s node.Snapshot) []Section {
	var out []Section
	if s.StoreCounters != nil {
		out = append(out, Section{Key: "state_store", Title: "State store", Counters: s.StoreCounters})
	}
	if s.COOPCounters != nil {
		out = append(out, Section{Key: "coop", Title: "Cooperative key servers (announcements, all groups with redundancy)", Counters: s.COOPCounters})
	}
	return append(out, Section{Key: "log_rate_limiter", Title: "Log rate limiter (log lines caused by unauthenticated input or refused registrations)", Counters: s.LogCounters})
}

// ISAKMPStatistics renders `show crypto isakmp statistics`: every phase-1
// drop reason, summed over the local addresses (including those a refresh
// removed), and the node's datagram-routing drops; then each section, its
// title unindented and its counters as above. `| json` has one object per
// section under its Key (name -> value), and "unavailable" (Key -> why)
// for the sections that could not be read.
func ISAKMPStatistics(s node.Snapshot, sections ...Section) (string, any) {
	var b strings.Builder
	b.WriteString("ISAKMP statistics (all local addresses, since start)\n")
	counterTable(&b, s.ISAKMPCounters)
	for _, sec := range sections {
		fmt.Fprintf(&b, "\n%s\n", sec.Title)
		if sec.Err != "" {
			fmt.Fprintf(&b, "  %% unavailable: %s\n", sec.Err)
			continue
		}
		counterTable(&b, sec.Counters)
	}
	return b.String(), StatisticsView(s, sections)
}

// GMCounters renders `show crypto gdoi gm counters`: the group member's
// registration and rekey counters, every drop reason among them, in total
// and per group.
func GMCounters(s node.Snapshot) (string, any) {
	var b strings.Builder
	if s.GMCounters == nil {
		b.WriteString("% this node is not a group member\n")
		return b.String(), GMCountersView(s)
	}
	b.WriteString("Group member counters (all groups, since start)\n")
	counterTable(&b, s.GMCounters)
	for _, m := range s.GM {
		fmt.Fprintf(&b, "\nGroup %s\n", m.Group)
		fmt.Fprintf(&b, "  %-32s: %d\n", "registrations", m.Registrations)
		fmt.Fprintf(&b, "  %-32s: %d\n", "rekeys_received", m.Rekeys.Received)
		fmt.Fprintf(&b, "  %-32s: %d\n", "rekeys_duplicate", m.Rekeys.Duplicate)
		fmt.Fprintf(&b, "  %-32s: %d\n", "rekeys_replayed", m.Rekeys.Replayed)
		fmt.Fprintf(&b, "  %-32s: %d\n", "rekeys_rejected", m.Rekeys.Rejected)
		fmt.Fprintf(&b, "  %-32s: %d\n", "rekey_acks_sent", m.Rekeys.AcksSent)
	}
	return b.String(), GMCountersView(s)
}

// KSCounters renders `show crypto gdoi ks counters`: the key server's
// drop reasons (refused pulls, bad or unknown rekey acknowledgements).
func KSCounters(s node.Snapshot) (string, any) {
	var b strings.Builder
	if s.KSCounters == nil {
		b.WriteString("% this node is not a key server\n")
		return b.String(), KSCountersView(s)
	}
	b.WriteString("Key server counters (all groups, since start)\n")
	counterTable(&b, s.KSCounters)
	for _, g := range s.KS {
		fmt.Fprintf(&b, "\nGroup %s\n  %-32s: %d\n  %-32s: %d\n", g.Name, "rekeys_sent", g.Rekeys, "members", memberCount(g))
	}
	return b.String(), KSCountersView(s)
}

// FeatureTable is one group's `show crypto gdoi feature gm-removal` (or
// policy-replace) table: the key servers and the members, with whether
// their versions support the feature.
type FeatureTable struct {
	Group      string
	KeyServers []ks.FeatureRow
	Members    []ks.FeatureRow
}

// Features renders `show crypto gdoi feature FEATURE` (gm-removal,
// policy-replace) in IOS's aligned columns (ID, Version, Feature
// Supported), as read at now.
func Features(feature string, now time.Time, tables []FeatureTable) (string, any) {
	tables = sortedKeyServers(tables)
	var b strings.Builder
	rows := func(head string, rs []ks.FeatureRow) {
		fmt.Fprintf(&b, "        %-20s%-10s%s\n", head, "Version", "Feature Supported")
		for _, r := range rs {
			v, yes := "unknown", "No"
			if !r.Version.IsZero() {
				v = r.Version.String()
			}
			if r.Supported {
				yes = "Yes"
			}
			fmt.Fprintf(&b, "          %-18s%-16s%s\n", r.ID, v, yes)
		}
	}
	for _, t := range tables {
		fmt.Fprintf(&b, "\n    Group Name: %s\n", t.Group)
		rows("Key Server ID", t.KeyServers)
		b.WriteString("\n")
		rows("Group Member ID", t.Members)
	}
	return b.String(), FeaturesView(feature, now, tables)
}

// sortedKeyServers returns tables with each one's key servers (this KS
// and, with redundancy, its COOP peers as the key server lists them)
// sorted by address, as the seed lists them (SPEC V3, V4).
func sortedKeyServers(tables []FeatureTable) []FeatureTable {
	out := slices.Clone(tables)
	for i := range out {
		out[i].KeyServers = slices.Clone(out[i].KeyServers)
		slices.SortStableFunc(out[i].KeyServers, func(a, b ks.FeatureRow) int { return a.ID.Compare(b.ID) })
	}
	return out
}
