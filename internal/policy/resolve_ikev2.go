package policy

import (
	"crypto/rsa"
	"strings"
)

// resolveIKEv2 checks the crypto ikev2 blocks and the G-IKEv2 groups.
func (p *parser) resolveIKEv2() {
	c := p.cfg
	for _, pr := range c.IKEv2Proposals {
		what := "crypto ikev2 proposal " + pr.Name
		var gcm, cbc bool
		for _, e := range pr.Encryption {
			if strings.HasPrefix(e, "aes-gcm-") {
				gcm = true
			} else {
				cbc = true
			}
		}
		switch {
		case len(pr.Encryption) == 0:
			p.errAt(pr.Line, "%s: encryption is required (e.g. encryption aes-gcm-256)", what)
		case gcm && cbc:
			p.errAt(pr.Line, "%s: AES-GCM and AES-CBC cannot be in one proposal (as on IOS): make two proposals", what)
		case gcm && len(pr.Integrity) > 0:
			p.errAt(pr.Line, "%s: AES-GCM provides its own integrity and takes no integrity line", what)
		case gcm && len(pr.PRF) == 0:
			p.errAt(pr.Line, "%s: an AES-GCM proposal needs prf (e.g. prf sha256)", what)
		case cbc && len(pr.Integrity) == 0:
			p.errAt(pr.Line, "%s: AES-CBC needs integrity (e.g. integrity sha256)", what)
		}
		if len(pr.Groups) == 0 {
			p.errAt(pr.Line, "%s: group is required (e.g. group 19)", what)
		}
	}
	for _, pol := range c.IKEv2Policies {
		pol.Proposals = nil
		if len(pol.ProposalNames) == 0 {
			p.errAt(pol.Line, "crypto ikev2 policy %s: proposal NAME is required", pol.Name)
		}
		for _, n := range pol.ProposalNames {
			pr := c.IKEv2Proposal(n)
			if pr == nil {
				p.errAt(pol.ProposalLine, "crypto ikev2 policy %s: proposal %q is not defined", pol.Name, n)
				continue
			}
			pol.Proposals = append(pol.Proposals, pr)
		}
	}
	for _, kr := range c.IKEv2Keyrings {
		for _, k := range kr.Peers {
			what := "crypto ikev2 keyring " + kr.Name + " peer " + k.Name
			local, remote := k.Keys()
			switch {
			case local == "" && remote == "":
				p.errAt(k.Line, "%s: no key (pre-shared-key KEY)", what)
			case local == "":
				p.errAt(k.KeyLine, "%s: pre-shared-key remote without a local key (add pre-shared-key local KEY, or pre-shared-key KEY for both)", what)
			case remote == "":
				p.errAt(k.KeyLine, "%s: pre-shared-key local without a remote key (add pre-shared-key remote KEY, or pre-shared-key KEY for both)", what)
			case local != remote:
				p.errAt(k.KeyLine, "%s: pre-shared-key local and remote differ: not supported (internal/ikev2 authenticates both ways with one key per peer); use pre-shared-key KEY", what)
			}
			if !k.Prefix.IsValid() {
				p.errAt(k.Line, "%s: address A.B.C.D [MASK] is required: ikev2d finds a pre-shared key by the peer's address (identity alone is not supported yet)", what)
			}
		}
	}
	for _, pr := range c.IKEv2Profiles {
		p.resolveIKEv2Profile(pr)
	}
	for _, g := range c.Groups {
		g.IKEv2Profile = nil
		if g.Protocol() != ProtocolGIKEv2 {
			continue
		}
		pr := c.IKEv2Profile(g.IKEv2ProfileName)
		if pr == nil {
			p.errAt(g.ClientProtocolLine, "%s: crypto ikev2 profile %q is not defined", g.header(), g.IKEv2ProfileName)
			continue
		}
		g.IKEv2Profile = pr
		if g.Server != nil && g.Server.Redundancy != nil && len(c.ISAKMPPolicies) == 0 {
			p.errAt(g.Server.Redundancy.Line, "%s: cooperative key servers talk over IKEv1 (as on IOS: G-IKEv2 has no COOP), but no crypto isakmp policy is configured", g.header())
		}
	}
}

func (p *parser) resolveIKEv2Profile(pr *IKEv2Profile) {
	c, k := p.cfg, &p.cfg.PKI
	what := "crypto ikev2 profile " + pr.Name
	if pr.AuthLocal == "" {
		p.errAt(pr.Line, "%s: authentication local {pre-share | rsa-sig | ecdsa-sig} is required", what)
	}
	if len(pr.AuthRemote) == 0 {
		p.errAt(pr.Line, "%s: authentication remote {pre-share | rsa-sig | ecdsa-sig} is required", what)
	}
	pr.Keyring = nil
	switch {
	case pr.KeyringName != "":
		kr := c.IKEv2Keyring(pr.KeyringName)
		if kr == nil {
			p.errAt(pr.KeyringLine, "%s: crypto ikev2 keyring %q is not defined", what, pr.KeyringName)
			break
		}
		pr.Keyring = kr
		if len(kr.Peers) == 0 && pr.UsesPSK() {
			p.errAt(pr.KeyringLine, "%s: crypto ikev2 keyring %s has no peer, so no pre-shared key", what, kr.Name)
		}
	case pr.UsesPSK():
		line := pr.AuthLocalLine
		if pr.AuthLocal != AuthPreShare {
			line = pr.AuthRemoteLine
		}
		p.errAt(line, "%s: authentication pre-share needs keyring local NAME (a crypto ikev2 keyring with the peers' keys)", what)
	}
	if pr.LocalIdentity.Type == IKEv2IDDN && pr.AuthLocal == AuthPreShare {
		p.errAt(pr.LocalIdentityLine, "%s: identity local dn needs a certificate (authentication local rsa-sig or ecdsa-sig)", what)
	}
	if !pr.UsesCertificates() {
		return
	}
	var missing []string
	if k.CertPath == "" && (pr.AuthLocal == AuthRSASig || pr.AuthLocal == AuthECDSASig) {
		missing = append(missing, "crypto pki certificate file")
	}
	if k.KeyPath == "" && (pr.AuthLocal == AuthRSASig || pr.AuthLocal == AuthECDSASig) {
		missing = append(missing, "crypto pki key file")
	}
	if k.CAPath == "" && (pr.RemoteAllows(AuthRSASig) || pr.RemoteAllows(AuthECDSASig)) {
		missing = append(missing, "crypto pki ca file")
	}
	if len(missing) > 0 {
		p.errAt(pr.Line, "%s: certificate authentication needs %s (groupvpn's crypto pki lines stand for the trustpoint)", what, strings.Join(missing, ", "))
		return
	}
	if k.Key == nil || pr.AuthLocal == AuthPreShare {
		return
	}
	_, isRSA := k.Key.(*rsa.PrivateKey)
	if pr.AuthLocal == AuthRSASig && !isRSA {
		p.errAt(pr.AuthLocalLine, "%s: authentication local rsa-sig needs an RSA key, crypto pki key file %s is EC (use ecdsa-sig)", what, k.KeyPath)
	}
	if pr.AuthLocal == AuthECDSASig && isRSA {
		p.errAt(pr.AuthLocalLine, "%s: authentication local ecdsa-sig needs an EC key, crypto pki key file %s is RSA (use rsa-sig)", what, k.KeyPath)
	}
}

// header is the group's block header as written: crypto gkm group NAME or
// crypto gdoi group NAME.
func (g *Group) header() string {
	if g.GKM {
		return "crypto gkm group " + g.Name
	}
	return "crypto gdoi group " + g.Name
}
