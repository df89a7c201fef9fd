package testnet

import (
	"fmt"
	"strings"
)

// IKEv2 key-derivation labels as charon 5.9.8 logs them (subsystem IKE,
// level 4; libcharon's keymat_v2.c), RFC 7296 §2.14:
//
//	shared Diffie Hellman secret   g^ir (for ECP groups the x coordinate only)
//	SKEYSEED                       prf(Ni | Nr, g^ir)
//	Sk_d secret                    the first key of prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)
//	Sk_ai secret, Sk_ar secret     integrity keys (none with an AEAD: logged empty or not at all)
//	Sk_ei secret, Sk_er secret     encryption keys (with AES-GCM the 4-octet salt at the end)
//	Sk_pi secret, Sk_pr secret     the keys of the AUTH payloads' MACed IDs
//
// The values are multi-line hex dumps as ParseHexDumps reads them.
var IKEv2KeymatLabels = []string{
	"shared Diffie Hellman secret",
	"SKEYSEED",
	"Sk_d secret",
	"Sk_ai secret",
	"Sk_ar secret",
	"Sk_ei secret",
	"Sk_er secret",
	"Sk_pi secret",
	"Sk_pr secret",
}

// ParseIKEv2Keymat extracts the IKEv2 key-derivation values (see
// IKEv2KeymatLabels) of the first IKE SA of a charon log written with ike
// at level 4, keyed by label; a later IKE SA's values are stored as
// "<label>#2", … in log order. It fails if a dump is malformed or if the
// log has no SKEYSEED.
func ParseIKEv2Keymat(log string) (map[string][]byte, error) {
	dumps, err := ParseHexDumps(log)
	if err != nil {
		return nil, err
	}
	km := make(map[string][]byte)
	for _, d := range dumps {
		known := false
		for _, l := range IKEv2KeymatLabels {
			known = known || d.Label == l
		}
		if !known {
			continue
		}
		key := d.Label
		for n := 2; ; n++ {
			if _, dup := km[key]; !dup {
				break
			}
			key = fmt.Sprintf("%s#%d", d.Label, n)
		}
		km[key] = d.Data
	}
	if _, ok := km["SKEYSEED"]; !ok {
		return nil, fmt.Errorf("no IKEv2 key derivation in the log (is charon's ike subsystem logged at level 4?)")
	}
	return km, nil
}

// IKEv2Conn is one IKEv2 connection of a swanctl.conf, rendered by
// String.
type IKEv2Conn struct {
	Name          string
	Local, Remote string // addresses
	Proposals     string // e.g. "aes128gcm16-prfsha256-ecp256"
	LocalAuth     string // "psk" or "pubkey"
	LocalID       string // as swanctl writes it, quoted if it holds spaces or '='
	LocalCert     string // file name under x509/, for pubkey
	RemoteAuth    string
	RemoteID      string
	// Child, if not empty, adds a tunnel-mode CHILD_SA of that name with
	// these ESP proposals; its traffic selectors are the two addresses.
	// Installing it needs IKEv2ChildPlugins (no kernel ESP here).
	Child         string
	ChildProposal string
	// LocalTS and RemoteTS are the CHILD_SA's traffic selectors; empty:
	// the two addresses/32. kernel-libipsec refuses selectors that cover
	// the IKE peer's address ("conflicts with IKE traffic").
	LocalTS, RemoteTS string
	// Encap forces UDP encapsulation (encap = yes: charon fakes its
	// NAT_DETECTION hash so that both sides move to port 4500);
	// kernel-libipsec installs only UDP-encapsulated ESP.
	Encap bool
	// Extra is put inside the connection's section, e.g. "dpd_delay = 1s".
	Extra string
}

// String renders the connection as a swanctl.conf "connections" section.
func (c IKEv2Conn) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "connections {\n\t%s {\n\t\tversion = 2\n\t\tlocal_addrs = %s\n\t\tremote_addrs = %s\n", c.Name, c.Local, c.Remote)
	encap := "no"
	if c.Encap {
		encap = "yes"
	}
	fmt.Fprintf(&b, "\t\tproposals = %s\n\t\tfragmentation = no\n\t\tmobike = no\n\t\tencap = %s\n", c.Proposals, encap)
	if c.Extra != "" {
		fmt.Fprintf(&b, "\t\t%s\n", c.Extra)
	}
	fmt.Fprintf(&b, "\t\tlocal {\n\t\t\tauth = %s\n\t\t\tid = %s\n", c.LocalAuth, c.LocalID)
	if c.LocalCert != "" {
		fmt.Fprintf(&b, "\t\t\tcerts = %s\n", c.LocalCert)
	}
	fmt.Fprintf(&b, "\t\t}\n\t\tremote {\n\t\t\tauth = %s\n\t\t\tid = %s\n\t\t}\n", c.RemoteAuth, c.RemoteID)
	if c.Child != "" {
		lts, rts := c.LocalTS, c.RemoteTS
		if lts == "" {
			lts = c.Local + "/32"
		}
		if rts == "" {
			rts = c.Remote + "/32"
		}
		fmt.Fprintf(&b, "\t\tchildren {\n\t\t\t%s {\n\t\t\t\tesp_proposals = %s\n\t\t\t\tlocal_ts = %s\n\t\t\t\tremote_ts = %s\n\t\t\t}\n\t\t}\n",
			c.Child, c.ChildProposal, lts, rts)
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// PSKSecret renders a swanctl.conf "secrets" section with one IKE
// pre-shared key for two identities.
func PSKSecret(secret, id1, id2 string) string {
	return fmt.Sprintf("secrets {\n\tike-gv {\n\t\tsecret = %q\n\t\tid-1 = %s\n\t\tid-2 = %s\n\t}\n}\n", secret, id1, id2)
}

// IKEv2Plugins are DefaultPlugins plus what charon 5.9.8 needs for IKEv2:
// "kdf" (its IKEv2 key derivation, prf+, lives in that plugin since 5.9.8:
// without it charon logs "KDF_PRF with PRF_HMAC_SHA2_256 not supported")
// and "gcm" (AES-GCM, also provided by openssl). Pass them as
// CharonConfig.Plugins, after RequirePlugins(t, "kdf", "openssl").
var IKEv2Plugins = append(append([]string{}, DefaultPlugins...), "kdf", "gcm")

// IKEv2ChildPlugins are IKEv2Plugins with "kernel-libipsec" loaded first
// (Debian's libcharon-extra-plugins): charon then installs CHILD SAs into
// its userland ESP stack behind a TUN device, since this host's kernel has
// no ESP. RequirePlugins(t, "kernel-libipsec") first.
var IKEv2ChildPlugins = append([]string{"kernel-libipsec"}, IKEv2Plugins...)

// ChildKeymatLabels are the CHILD SA keys charon 5.9.8 logs with chd at
// level 4 (keymat_v2.c, RFC 7296 §2.17), read with ParseHexDumps.
var ChildKeymatLabels = []string{
	"encryption initiator key",
	"encryption responder key",
	"integrity initiator key",
	"integrity responder key",
}
