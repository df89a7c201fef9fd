package policy

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// ChangeKind names one row of table 1 of the GET VPN "GM removal and
// policy trigger" guide (seed 001, "rekey behaviour after a security policy
// change"), plus two rows for sa ipsec policies that appear or disappear.
type ChangeKind string

// The kinds of policy change Diff recognises (SPEC P7). TEK kinds concern
// one sa ipsec of a group (receive-only concerns all of them), KEK kinds
// the group's rekey SA.
const (
	TEKLifetime       ChangeKind = "TEK: SA lifetime"
	TEKTransformSet   ChangeKind = "TEK: IPsec transform set"
	TEKProfile        ChangeKind = "TEK: IPsec profile"
	TEKMatchACL       ChangeKind = "TEK: matching ACL"
	TEKReplayEnabled  ChangeKind = "TEK: replay counter enabled"
	TEKReplayValue    ChangeKind = "TEK: replay counter value"
	TEKReplayDisabled ChangeKind = "TEK: replay counter disabled"
	TEKTBAREnabled    ChangeKind = "TEK: TBAR enabled"
	TEKTBARWindow     ChangeKind = "TEK: TBAR window"
	TEKTBARDisabled   ChangeKind = "TEK: TBAR disabled"
	TEKReceiveOnlyOn  ChangeKind = "TEK: receive-only enabled"
	TEKReceiveOnlyOff ChangeKind = "TEK: receive-only disabled"
	TEKSAAdded        ChangeKind = "TEK: sa ipsec added"   // not in table 1
	TEKSARemoved      ChangeKind = "TEK: sa ipsec removed" // not in table 1
	KEKLifetime       ChangeKind = "KEK: SA lifetime"
	KEKAuthentication ChangeKind = "KEK: authentication key"
	KEKCipher         ChangeKind = "KEK: cipher algorithm"
)

// kindInfo is what table 1 says about a kind: whether the KS must send a
// rekey for the change to reach the GMs, and what the GMs do after it.
type kindInfo struct {
	rekey  bool
	effect string
}

var kinds = map[ChangeKind]kindInfo{
	TEKLifetime: {false, "Old SAs stay active until their lifetime expires; the new lifetime takes effect after the next scheduled rekey " +
		"(clear crypto sa does not help: the GM re-registers with the old lifetime and downloads the old SAs again)"},
	TEKTransformSet:   {true, "SAs of the old transform set stay active until their lifetime expires"},
	TEKProfile:        {true, "SAs of the old profile stay active until their lifetime expires"},
	TEKMatchACL:       {true, "The new ACL is used for outbound packet classification at once; the old SAs stay in the SA database (show crypto ipsec sa) until their lifetime expires"},
	TEKReplayEnabled:  {true, "Old SAs without counter replay stay active until their lifetime expires"},
	TEKReplayValue:    {false, "SAs with the new replay counter window are sent at the next scheduled rekey"},
	TEKReplayDisabled: {true, "Old SAs with counter replay enabled stay active until their lifetime expires"},
	TEKTBAREnabled:    {true, "Old SAs without time-based anti-replay (TBAR) stay active until their lifetime expires"},
	TEKTBARWindow:     {false, "SAs with the new TBAR window are sent at the next scheduled rekey"},
	TEKTBARDisabled:   {true, "Old SAs with TBAR enabled stay active until their lifetime expires"},
	TEKReceiveOnlyOn:  {true, "Receive-only mode becomes active right after the rekey"},
	TEKReceiveOnlyOff: {true, "Receive-only mode becomes inactive right after the rekey"},
	TEKSAAdded:        {true, "GMs install the new SAs right after the rekey and protect the policy's traffic with them"},
	TEKSARemoved:      {true, "GMs get no new SAs for the removed policy; its old SAs stay active until their lifetime expires"},
	KEKLifetime:       {false, "The change is applied at the next rekey"},
	KEKAuthentication: {true, "The change is applied immediately"},
	KEKCipher:         {true, "The change is applied immediately"},
}

// Rekey reports table 1's "rekey sent?" for the kind.
func (k ChangeKind) Rekey() bool { return kinds[k].rekey }

// Effect is table 1's "behaviour after the rekey" for the kind, in English.
func (k ChangeKind) Effect() string { return kinds[k].effect }

// Change is one policy change of a key-server group (SPEC P7).
type Change struct {
	Group  string     `json:"group"`
	Kind   ChangeKind `json:"kind"`
	SA     int        `json:"sa"`   // sa ipsec N for TEK changes; 0 for KEK changes and receive-only
	From   string     `json:"from"` // the old value, human-readable
	To     string     `json:"to"`   // the new value
	Rekey  bool       `json:"rekey"`
	Effect string     `json:"effect"`
}

// String is one line: `group G sa ipsec 1: TEK: IPsec profile a -> b
// (rekey: yes): SAs of the old profile stay active ...`.
func (c Change) String() string {
	where := "group " + c.Group
	if c.SA != 0 {
		where += " sa ipsec " + itoa(c.SA)
	}
	return fmt.Sprintf("%s: %s %s -> %s (rekey: %s): %s", where, c.Kind, c.From, c.To, yesNo(c.Rekey, "yes", "no"), c.Effect)
}

// NeedsRekey reports whether any change needs a rekey to reach the GMs.
func NeedsRekey(cs []Change) bool {
	return slices.ContainsFunc(cs, func(c Change) bool { return c.Rekey })
}

// FormatChanges prints changes as the "pending changes" section of show
// crypto gdoi ks policy: one table per group, in the order the groups first
// appear in cs, with table 1's columns (rekey sent? Yes/No, behaviour after
// the rekey) and a last line saying whether a rekey is needed.
func FormatChanges(cs []Change) string {
	if len(cs) == 0 {
		return "No pending policy changes\n"
	}
	var groups []string
	by := map[string][]Change{}
	for _, c := range cs {
		if _, ok := by[c.Group]; !ok {
			groups = append(groups, c.Group)
		}
		by[c.Group] = append(by[c.Group], c)
	}
	var b strings.Builder
	for i, g := range groups {
		if i > 0 {
			b.WriteString("\n")
		}
		gcs := by[g]
		fmt.Fprintf(&b, "Group %s: %d pending policy %s\n", g, len(gcs), yesNo(len(gcs) == 1, "change", "changes"))
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  SA\tPolicy change\tFrom\tTo\tRekey\tBehaviour after the rekey")
		for _, c := range gcs {
			sa := "-"
			if c.SA != 0 {
				sa = itoa(c.SA)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", sa, c.Kind, c.From, c.To, yesNo(c.Rekey, "Yes", "No"), c.Effect)
		}
		tw.Flush()
		if NeedsRekey(gcs) {
			fmt.Fprintf(&b, "  Rekey needed: use 'crypto gdoi ks group %s rekey', or the changes will be sent in the next scheduled rekey\n", g)
		} else {
			b.WriteString("  No rekey needed: the changes will be sent in the next scheduled rekey\n")
		}
	}
	return b.String()
}

func yesNo(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

// Diff compares two configurations of a key server and classifies every
// change to the policy of each key-server group as table 1 of seed 001
// does (SPEC P7). Groups are matched by name; only groups that have server
// local in both configurations are compared (a group that appears has no
// GMs yet, one that disappears has no KS left to rekey it). Values are
// compared resolved: a profile whose transform set is edited, an ACL whose
// entries change, a key file that holds another key under the same label
// are changes. Only policy that reaches the GMs counts: hostname, phase 1,
// pre-shared keys, authorization, rekey transport and retransmission are
// not policy changes of a group.
//
// Choices where table 1 is silent:
//   - Per sa ipsec N, matched by N: one that appears is TEKSAAdded and one
//     that disappears TEKSARemoved, both needing a rekey; nothing else is
//     reported for it.
//   - When sa ipsec N names another profile, that is one TEKProfile change;
//     the lifetime and transform sets of the new profile come with it and
//     are not reported separately. When the profile stays, its lifetime
//     (TEKLifetime) and its transform sets (TEKTransformSet: their names,
//     order or contents, mode included) are compared.
//   - TEKMatchACL: another ACL name, or the same ACL with other entries
//     (sequence numbers alone do not count: they do not change matching).
//   - Switching between counter replay and TBAR is two changes, both
//     needing a rekey: TEKReplayDisabled and TEKTBAREnabled (or
//     TEKTBARDisabled and TEKReplayEnabled), since the GMs see both rows'
//     behaviour: the old SAs keep their old anti-replay until they expire,
//     the new ones use the new one.
//   - sa receive-only applies to every TEK of the group: its changes have
//     SA 0.
//   - KEK lifetime and cipher changes are reported only when rekeys are
//     configured (rekey authentication) before or after: without it there
//     is no KEK. The authentication key compares the key type, label and
//     public key; configuring or removing it is an authentication key
//     change ("none").
//
// The order is deterministic: groups as in new; within a group, the sa
// ipsec policies by number (in table 1's order of kinds), then
// receive-only, then the KEK.
func Diff(old, new *Config) []Change {
	if old == nil || new == nil {
		return nil
	}
	var out []Change
	for _, ng := range new.Groups {
		og := old.Group(ng.Name)
		if ng.Server == nil || og == nil || og.Server == nil {
			continue
		}
		out = append(out, diffGroup(ng.Name, og.Server, ng.Server)...)
	}
	return out
}

func diffGroup(group string, o, n *ServerLocal) []Change {
	var out []Change
	add := func(sa int, k ChangeKind, from, to string) {
		out = append(out, Change{Group: group, Kind: k, SA: sa, From: from, To: to, Rekey: k.Rekey(), Effect: k.Effect()})
	}

	// TEKs, by sa ipsec number.
	var seqs []int
	olds, news := map[int]*SAIPsec{}, map[int]*SAIPsec{}
	for _, sa := range o.SAs {
		olds[sa.Seq] = sa
		seqs = append(seqs, sa.Seq)
	}
	for _, sa := range n.SAs {
		news[sa.Seq] = sa
		seqs = append(seqs, sa.Seq)
	}
	slices.Sort(seqs)
	seqs = slices.Compact(seqs)
	for _, seq := range seqs {
		oa, na := olds[seq], news[seq]
		switch {
		case oa == nil:
			add(seq, TEKSAAdded, "none", saSummary(na))
			continue
		case na == nil:
			add(seq, TEKSARemoved, saSummary(oa), "none")
			continue
		}
		if oa.ProfileName != na.ProfileName {
			add(seq, TEKProfile, oa.ProfileName, na.ProfileName)
		} else {
			if ol, nl := profileLifetime(oa.Profile), profileLifetime(na.Profile); ol != nl {
				add(seq, TEKLifetime, secsText(ol), secsText(nl))
			}
			if !sameTransformSets(oa.Profile, na.Profile) {
				names := !slices.Equal(profileSetNames(oa.Profile), profileSetNames(na.Profile))
				add(seq, TEKTransformSet, transformSetsText(oa.Profile, names), transformSetsText(na.Profile, names))
			}
		}
		if oa.MatchACLName != na.MatchACLName {
			add(seq, TEKMatchACL, oa.MatchACLName, na.MatchACLName)
		} else if !sameEntries(oa.MatchACL, na.MatchACL) {
			add(seq, TEKMatchACL, aclText(oa.MatchACLName, oa.MatchACL), aclText(na.MatchACLName, na.MatchACL))
		}
		from, to := replayText(oa), replayText(na)
		switch or, nr := oa.Replay, na.Replay; {
		case or == nr:
			if or != ReplayNone && oa.ReplayWindow != na.ReplayWindow {
				add(seq, yesNoKind(or == ReplayCounter, TEKReplayValue, TEKTBARWindow), from, to)
			}
		default:
			switch or {
			case ReplayCounter:
				add(seq, TEKReplayDisabled, from, to)
			case ReplayTime:
				add(seq, TEKTBARDisabled, from, to)
			}
			switch nr {
			case ReplayCounter:
				add(seq, TEKReplayEnabled, from, to)
			case ReplayTime:
				add(seq, TEKTBAREnabled, from, to)
			}
		}
	}

	// Receive-only concerns every TEK of the group.
	if o.ReceiveOnly != n.ReceiveOnly {
		add(0, yesNoKind(n.ReceiveOnly, TEKReceiveOnlyOn, TEKReceiveOnlyOff), onOff(o.ReceiveOnly), onOff(n.ReceiveOnly))
	}

	// The KEK.
	kek := o.RekeyKeyLabel != "" || n.RekeyKeyLabel != ""
	if kek && o.RekeyLifetime != n.RekeyLifetime {
		add(0, KEKLifetime, secsText(o.RekeyLifetime), secsText(n.RekeyLifetime))
	}
	if from, to := rekeyKeyText(o), rekeyKeyText(n); from != to {
		add(0, KEKAuthentication, from, to)
	}
	if kek && o.RekeyKeyBits != n.RekeyKeyBits {
		add(0, KEKCipher, "aes "+itoa(o.RekeyKeyBits), "aes "+itoa(n.RekeyKeyBits))
	}
	return out
}

func yesNoKind(b bool, yes, no ChangeKind) ChangeKind {
	if b {
		return yes
	}
	return no
}

func onOff(b bool) string { return yesNo(b, "on", "off") }

func secsText(d time.Duration) string { return secs(d) + " s" }

func profileLifetime(p *IPsecProfile) time.Duration {
	if p == nil {
		return 0
	}
	return p.Lifetime
}

func profileSetNames(p *IPsecProfile) []string {
	if p == nil {
		return nil
	}
	return p.TransformSetNames
}

func profileSets(p *IPsecProfile) []*TransformSet {
	if p == nil {
		return nil
	}
	return p.TransformSets
}

// sameTransformSets compares the transform sets a profile offers: names,
// order, transforms and mode.
func sameTransformSets(a, b *IPsecProfile) bool {
	if !slices.Equal(profileSetNames(a), profileSetNames(b)) {
		return false
	}
	return slices.EqualFunc(profileSets(a), profileSets(b), func(x, y *TransformSet) bool {
		return slices.Equal(x.Transforms(), y.Transforms()) && x.Mode == y.Mode
	})
}

// transformSetsText is "esp-aes 128 esp-sha256-hmac" for one set, sets
// separated by ", "; with names, each is "NAME (transforms)".
func transformSetsText(p *IPsecProfile, names bool) string {
	var parts []string
	for _, t := range profileSets(p) {
		s := strings.Join(t.Transforms(), " ")
		if t.Mode != "" && t.Mode != "tunnel" {
			s += " mode " + t.Mode
		}
		if names {
			s = t.Name + " (" + s + ")"
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// sameEntries compares two ACLs' entries, sequence numbers and lines
// aside.
func sameEntries(a, b *ACL) bool {
	var ae, be []*ACE
	if a != nil {
		ae = a.Entries
	}
	if b != nil {
		be = b.Entries
	}
	return slices.EqualFunc(ae, be, func(x, y *ACE) bool {
		return x.Action == y.Action && x.Protocol == y.Protocol && x.Src == y.Src && x.Dst == y.Dst &&
			x.SrcPort == y.SrcPort && x.DstPort == y.DstPort
	})
}

// aclText is "NAME: 10 permit ...; 20 deny ...".
func aclText(name string, a *ACL) string {
	if a == nil {
		return name
	}
	var es []string
	for _, e := range a.Entries {
		es = append(es, e.render(a.Standard))
	}
	return name + ": " + strings.Join(es, "; ")
}

func replayText(sa *SAIPsec) string {
	switch sa.Replay {
	case ReplayCounter:
		return "counter window-size " + itoa(sa.ReplayWindow)
	case ReplayTime:
		return "time window-size " + itoa(sa.ReplayWindow) + " s"
	}
	return "none"
}

// saSummary is "profile P, match address A".
func saSummary(sa *SAIPsec) string {
	return "profile " + sa.ProfileName + ", match address " + sa.MatchACLName
}

// rekeyKeyText is "TYPE LABEL (key FINGERPRINT)", the fingerprint the
// first 8 octets of the SHA-256 of the public key's PKIX encoding, or
// "none".
func rekeyKeyText(s *ServerLocal) string {
	if s.RekeyKeyLabel == "" {
		return "none"
	}
	t := s.RekeyKeyType + " " + s.RekeyKeyLabel
	if s.RekeyKey != nil && s.RekeyKey.Signer != nil {
		t += " (key " + fingerprint(s.RekeyKey.Signer.Public()) + ")"
	}
	return t
}

func fingerprint(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "unknown"
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:8])
}
