package policy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

func itoa(n int) string           { return strconv.Itoa(n) }
func utoa(n uint32) string        { return strconv.FormatUint(uint64(n), 10) }
func secs(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }

// String is Render.
func (c *Config) String() string { return c.Render() }

// Render prints the configuration in canonical IOS syntax, every value
// explicit (defaults included), one space of indentation per sub-mode and
// "!" between blocks: show running-config. Parse(Render(c)) equals c but
// for line numbers.
func (c *Config) Render() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	bang := func() { b.WriteString("!\n") }

	if c.Hostname != "" {
		w("hostname %s", c.Hostname)
	}
	if !c.Version.IsZero() {
		w("groupvpn version %s", c.Version)
	}
	bang()
	if c.Logging.Buffered > 0 {
		w("logging buffered %d %s", c.Logging.Buffered, Severities[Severity(c.Logging.BufferedLevel, 7)])
	}
	if c.Logging.Trap != "" {
		w("logging trap %s", c.Logging.Trap)
	}
	if c.Logging.Facility != "" {
		w("logging facility %s", c.Logging.Facility)
	}
	for _, h := range c.Logging.Hosts {
		if h.Addr.Is6() {
			w("logging host ipv6 %s transport udp port %d", h.Addr, h.Port)
		} else {
			w("logging host %s transport udp port %d", h.Addr, h.Port)
		}
	}
	if c.Logging.Buffered > 0 || len(c.Logging.Hosts) > 0 || c.Logging.Trap != "" || c.Logging.Facility != "" {
		bang()
	}
	for _, p := range c.ISAKMPPolicies {
		w("crypto isakmp policy %d", p.Priority)
		w(" encryption aes %d", p.KeyBits)
		w(" hash %s", p.Hash)
		w(" authentication %s", p.Auth)
		w(" group %d", p.Group)
		w(" lifetime %s", secs(p.Lifetime))
		bang()
	}
	for _, k := range c.ISAKMPKeys {
		w("crypto isakmp key %s address %s", k.Key, renderKeyPrefix(k.Prefix))
	}
	if k := c.Keepalive.String(); k != "" {
		w("%s", k)
	}
	w("crypto isakmp identity %s", c.Identity)
	bang()
	for _, k := range c.Keys {
		w("crypto key import %s %s file %s", k.Type, k.Label, k.Path)
	}
	if c.PKI.CertPath != "" {
		w("crypto pki certificate file %s", c.PKI.CertPath)
	}
	if c.PKI.CAPath != "" {
		w("crypto pki ca file %s", c.PKI.CAPath)
	}
	if c.PKI.KeyPath != "" {
		w("crypto pki key file %s", c.PKI.KeyPath)
	}
	if len(c.Keys) > 0 || c.PKI.CertPath != "" || c.PKI.CAPath != "" || c.PKI.KeyPath != "" {
		bang()
	}
	c.renderIKEv2(w, bang)
	for _, a := range c.ACLs {
		kind := "extended"
		if a.Standard {
			kind = "standard"
		}
		w("ip access-list %s %s", kind, a.Name)
		for _, e := range a.Entries {
			w(" %s", e.render(a.Standard))
		}
		bang()
	}
	for _, t := range c.TransformSets {
		w("crypto ipsec transform-set %s %s", t.Name, strings.Join(t.Transforms(), " "))
		w(" mode %s", t.Mode)
		bang()
	}
	for _, p := range c.Profiles {
		w("crypto ipsec profile %s", p.Name)
		w(" set security-association lifetime seconds %s", secs(p.Lifetime))
		if len(p.TransformSetNames) > 0 {
			w(" set transform-set %s", strings.Join(p.TransformSetNames, " "))
		}
		bang()
	}
	for _, g := range c.Groups {
		if g.GKM {
			w("crypto gkm group %s", g.Name)
		} else {
			w("crypto gdoi group %s", g.Name)
		}
		if g.Identity != 0 {
			w(" identity number %d", g.Identity)
		}
		if s := g.Server; s != nil {
			w(" server local")
			w("  rekey algorithm aes %d", s.RekeyKeyBits)
			w("  rekey lifetime seconds %s", secs(s.RekeyLifetime))
			w("  rekey retransmit %s number %d", secs(s.RekeyRetransmit), s.RekeyRetransmits)
			if s.RekeyKeyLabel != "" {
				w("  rekey authentication mypubkey %s %s", s.RekeyKeyType, s.RekeyKeyLabel)
			}
			if s.RekeyACLName != "" {
				w("  rekey address ipv4 %s", s.RekeyACLName)
			}
			if s.RekeyTTL != 0 {
				w("  rekey multicast ttl %d", s.RekeyTTL)
			}
			if s.RekeyInterface != "" {
				w("  rekey multicast interface %s", s.RekeyInterface)
			}
			if s.RekeyUnicast {
				w("  rekey transport unicast")
			}
			if s.Address.IsValid() {
				w("  address ipv4 %s", s.Address)
			}
			if s.AuthorizationACLName != "" {
				w("  authorization address ipv4 %s", s.AuthorizationACLName)
			}
			for _, id := range s.AuthorizationIdentities {
				w("  authorization identity %s", id)
			}
			if s.ReceiveOnly {
				w("  sa receive-only")
			}
			if g.Protocol() == ProtocolGIKEv2 {
				w("  gikev2 %s", g.IKEv2ProfileName)
			}
			if r := s.Redundancy; r != nil {
				w("  redundancy")
				if r.LocalPriority != 0 {
					w("   local priority %d", r.LocalPriority)
				}
				for i, a := range r.Peers {
					if i < len(r.PeerIdentities) && r.PeerIdentities[i] != "" {
						w("   peer address ipv4 %s identity %s", a, r.PeerIdentities[i])
						continue
					}
					w("   peer address ipv4 %s", a)
				}
				if r.Period != 0 {
					w("   timers announce %s", secs(r.Period))
				}
				if r.Dead != 0 {
					w("   timers dead %s", secs(r.Dead))
				}
				if r.ElectionWait != 0 {
					w("   timers election-wait %s", secs(r.ElectionWait))
				}
			}
			for _, sa := range s.SAs {
				w("  sa ipsec %d", sa.Seq)
				if sa.ProfileName != "" {
					w("   profile %s", sa.ProfileName)
				}
				if sa.MatchACLName != "" {
					w("   match address ipv4 %s", sa.MatchACLName)
				}
				switch sa.Replay {
				case ReplayCounter:
					w("   replay counter window-size %d", sa.ReplayWindow)
				case ReplayTime:
					w("   replay time window-size %d", sa.ReplayWindow)
				case ReplayNone:
					w("   no replay")
				}
			}
		}
		for _, s := range g.Servers {
			w(" server address ipv4 %s", s.Addr)
		}
		if g.Server == nil && g.Protocol() == ProtocolGIKEv2 {
			w(" client protocol gikev2 %s", g.IKEv2ProfileName)
		}
		if g.RegistrationInterface != "" {
			w(" client registration interface %s", g.RegistrationInterface)
		}
		bang()
	}
	for _, e := range c.CryptoMaps {
		w("crypto map %s %d gdoi", e.Map, e.Seq)
		if e.GroupName != "" {
			w(" set group %s", e.GroupName)
		}
		bang()
	}
	for _, f := range c.FailClose {
		w("crypto map %s gdoi fail-close", f.Map)
		if f.MatchACLName != "" {
			w(" match address %s", f.MatchACLName)
		}
		if f.Activated {
			w(" activate")
		}
		bang()
	}
	for _, ifc := range c.Interfaces {
		w("interface %s", ifc.Name)
		if ifc.CryptoMap != "" {
			w(" crypto map %s", ifc.CryptoMap)
		}
		bang()
	}
	w("end")
	return b.String()
}

func renderKeyPrefix(p netip.Prefix) string {
	if p.Addr().Is6() {
		return "ipv6 " + p.String()
	}
	if p.Bits() == 32 {
		return p.Addr().String()
	}
	return p.Addr().String() + " " + mask4(p.Bits(), false)
}

// mask4 renders a prefix length as a netmask or, with wildcard, an IOS
// wildcard mask.
func mask4(bits int, wildcard bool) string {
	v := ^uint32(0) << (32 - bits)
	if bits == 0 {
		v = 0
	}
	if wildcard {
		v = ^v
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
}

func renderAddr(p netip.Prefix) string {
	switch p.Bits() {
	case 0:
		return "any"
	case 32:
		return "host " + p.Addr().String()
	}
	return p.Addr().String() + " " + mask4(p.Bits(), true)
}

// render prints the entry as in an access-list sub-mode, with its
// sequence number.
func (e *ACE) render(standard bool) string {
	parts := []string{itoa(e.Seq), string(e.Action)}
	if standard {
		return strings.Join(append(parts, renderAddr(e.Src)), " ")
	}
	proto := itoa(e.Protocol)
	switch e.Protocol {
	case AnyProtocol:
		proto = "ip"
	case 1:
		proto = "icmp"
	case 6:
		proto = "tcp"
	case 17:
		proto = "udp"
	}
	parts = append(parts, proto, renderAddr(e.Src))
	if e.SrcPort != 0 {
		parts = append(parts, "eq", itoa(e.SrcPort))
	}
	parts = append(parts, renderAddr(e.Dst))
	if e.DstPort != 0 {
		parts = append(parts, "eq", itoa(e.DstPort))
	}
	return strings.Join(parts, " ")
}
