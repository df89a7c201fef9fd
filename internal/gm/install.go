// Package gm is the group member side of GDOI: it checks the policy and
// keys a KS sends in GROUPKEY-PULL (RFC 6407 §3), installs them into the
// SA database, and keeps one registration per group alive: KS addresses
// tried in order with backoff, re-registration before the keys expire with
// jitter (SPEC T4).
package gm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/isakmp"
)

// Installed summarises what a registration installed. A Member keeps it
// without its TEKs and KEK once registered: read those from the data
// plane and the KEK store.
type Installed struct {
	TEKs []sadb.TEK
	KEK  *sadb.KEK
	// NeedSIDs: a rekey brought a counter-mode TEK while the GM holds no
	// sender ID; the TEK is installed without one (it opens packets, the
	// data plane does not send with it) and the GM must register again.
	NeedSIDs bool
	// Policy is the KS's match ACL in order: a Protect entry per TEK, a
	// Bypass entry per deny entry (SPEC E3); nil when nothing carried
	// TEKs.
	Policy   []sadb.PolicyEntry
	Seq      uint32
	Earliest time.Time // the first TEK expiry: re-register before it
	// EarliestLifetime is the lifetime (as received) of the TEK that ends
	// first: its re-registration window (ReregisterAt) is the one that
	// fits before Earliest (before, the first TEK's: a 24-hour policy
	// listed before a 15-minute one put the re-registration 10 to 20
	// minutes before the short TEK ended, in the past, again and again).
	EarliestLifetime time.Duration
}

// Install checks a GROUPKEY-PULL result against what this GM supports and
// installs it: every SAT must have a matching TEK key packet of the right
// lengths, the KEK key packet must match the SAK. Nothing is installed
// unless everything checks (the previous keys stay).
func Install(dp sadb.Dataplane, keks KEKStore, group string, groupID uint32, res *gdoi.Result, now time.Time) (*Installed, error) {
	return InstallHolding(dp, keks, group, groupID, res, Hold{}, now)
}

// InstallHolding is Install with the new TEKs' sending held back as hold
// says (a registration after a GM removal), set before they are installed.
func InstallHolding(dp sadb.Dataplane, keks KEKStore, group string, groupID uint32, res *gdoi.Result, hold Hold, now time.Time) (*Installed, error) {
	if res.Policy == nil || len(res.Policy.TEKs) == 0 {
		return nil, errors.New("gm: the KS sent no TEK policy")
	}
	out := &Installed{Seq: res.Seq, TEKs: make([]sadb.TEK, 0, len(res.Policy.TEKs))}
	var sids []uint32
	sidBits := 0
	if p := res.KD.Packet(isakmp.KDSID, nil); p != nil {
		for _, a := range p.Attributes {
			switch a.Type {
			case isakmp.SIDNumberOfBits:
				v, _ := a.Uint()
				sidBits = int(v)
			case isakmp.SIDValue:
				v, err := a.Uint()
				if err != nil {
					return nil, fmt.Errorf("gm: SID_VALUE: %w", err)
				}
				sids = append(sids, uint32(v))
			}
		}
	}
	for _, sat := range res.Policy.TEKs {
		t, err := tekFrom(sat, res.KD, now)
		if err != nil {
			return nil, err
		}
		t.Group, t.GroupID, t.Installed, t.SendFrom = group, groupID, now, now
		out.TEKs = append(out.TEKs, t)
	}
	// A TEK for the same traffic as another of the download that ends
	// later is one a rekey replaced, handed out while the other members
	// may still send with it (ks/replaced.go): it is for opening their
	// packets. One the GM holds already stays as it is (its sender IDs,
	// the deactivation the rekey set); another is installed without
	// sender IDs (the download's are for the current keys: the data plane
	// never sends with it), and the re-registration is timed by the
	// current TEKs alone.
	pol, err := policyFrom(res.Policy.TEKs, func(i int) bool { return replacedIn(out.TEKs, i) })
	if err != nil {
		return nil, err
	}
	out.Policy = pol
	var held []sadb.TEK // the group's TEKs installed before, when any TEK is a replaced one
	for i := range out.TEKs {
		if replacedIn(out.TEKs, i) {
			held = append(dp.TEKs(), sadb.TEK{}) // not nil
			break
		}
	}
	kept := out.TEKs
	var replaced []sadb.TEK // after the current ones: Installed.TEKs[0] is current
	if held != nil {
		kept = make([]sadb.TEK, 0, len(out.TEKs))
	} else {
		kept = kept[:0] // in place: nothing is skipped
	}
	for i := range out.TEKs {
		t := out.TEKs[i]
		if held != nil && replacedIn(out.TEKs, i) {
			if !slices.ContainsFunc(held, func(h sadb.TEK) bool { return h.Group == group && h.SPI == t.SPI }) {
				// Ordered after the current TEKs for sending (the data
				// plane takes the latest SendFrom first), even when they
				// end in the same second; accepted as long as by the
				// members that got the rekey (its deactivation delay, as
				// the KS sends it: 90 s), not to the end of its life (a
				// receive-only one lets covered traffic in the clear).
				t.SendFrom = now.Add(-time.Nanosecond)
				t.Deactivate = now.Add(replacedAccepted)
				if t.Expires.Before(t.Deactivate) {
					t.Deactivate = t.Expires
				}
				if t.AuthKey == nil { // counter mode (version.ReplacedCounterTEKs)
					t.SIDBits = openOnlyBits
				}
				replaced = append(replaced, t)
			}
			continue
		}
		if t.AuthKey == nil {
			if len(sids) == 0 {
				return nil, fmt.Errorf("gm: TEK 0x%08x is a counter mode but the KS sent no sender ID (RFC 6407 §5.6.4)", t.SPI)
			}
			t.SenderIDs, t.SIDBits = sids, sidBits
		}
		kept = append(kept, t)
		if out.Earliest.IsZero() || t.Expires.Before(out.Earliest) {
			out.Earliest, out.EarliestLifetime = t.Expires, t.Lifetime
		}
	}
	out.TEKs = append(kept, replaced...)
	if sak := res.Policy.KEK; sak != nil {
		k, err := kekFrom(sak, res.KD, now)
		if err != nil {
			return nil, err
		}
		k.Group, k.GroupID = group, groupID
		out.KEK = k
	}
	keepLaterSendFrom(dp, group, out.TEKs)
	hold.apply(out.TEKs, now)
	for _, t := range out.TEKs {
		if err := dp.InstallTEK(t); err != nil {
			return nil, err
		}
	}
	if out.KEK != nil {
		if err := keks.InstallKEK(*out.KEK); err != nil {
			return nil, err
		}
	}
	setPolicy(dp, group, out.Policy)
	return out, nil
}

// keepLaterSendFrom keeps the sending start a TEK already installed in
// group has when a registration brings that TEK again: a rekey's
// activation delay, or Hold's after a GM removal, is the time
// the other members need to hold the TEK, and a registration inside it
// (a retry, a re-registration the operator asked for) does not shorten it
// (CI: a second registration inside the removal's hold sent at once, and
// members not yet re-registered dropped its packets as no_sa).
func keepLaterSendFrom(dp sadb.Dataplane, group string, teks []sadb.TEK) {
	for _, old := range dp.TEKs() {
		if old.Group != group {
			continue
		}
		for i := range teks {
			if teks[i].SPI == old.SPI && old.SendFrom.After(teks[i].SendFrom) {
				teks[i].SendFrom = old.SendFrom
			}
		}
	}
}

// setPolicy hands the ordered policy to an SA database that keeps one.
func setPolicy(dp sadb.Dataplane, group string, p []sadb.PolicyEntry) {
	if ps, ok := dp.(sadb.PolicyStore); ok && p != nil {
		ps.SetPolicy(group, p)
	}
}

// policyFrom rebuilds the KS's ordered match ACL from the SATs, in SA
// payload order: each SAT's groupvpn-Bypass-Before entries, the SAT's own
// selector (Protect with its SPI), its groupvpn-Bypass-After entries
// (docs/wire.md). A KS that sends no bypass attributes gives a policy of
// Protect entries only, which is what a GM did before deny entries
// travelled.
func policyFrom(sats []*isakmp.SAT, replaced func(i int) bool) ([]sadb.PolicyEntry, error) {
	out := make([]sadb.PolicyEntry, 0, len(sats)) // one Protect entry each, bypass entries beyond
	bypass := func(sat *isakmp.SAT, t isakmp.IPsecAttr) error {
		a, ok := sat.Attributes.Find(uint16(t))
		if !ok {
			return nil
		}
		if a.Basic {
			return fmt.Errorf("gm: TEK 0x%08x: %s is not a variable attribute", sat.SPI, t)
		}
		sels, err := isakmp.ParseSelectors(a.Data)
		if err != nil {
			return fmt.Errorf("gm: TEK 0x%08x: %s: %w", sat.SPI, t, err)
		}
		for _, sel := range sels {
			e, err := entryFrom(sel, sadb.Bypass)
			if err != nil {
				return fmt.Errorf("gm: TEK 0x%08x: %s: %w", sat.SPI, t, err)
			}
			out = append(out, e)
		}
		return nil
	}
	for i, sat := range sats {
		if replaced != nil && replaced(i) {
			// One a rekey replaced (InstallHolding) adds no entry: the
			// current TEK for its traffic has the same, bypass lists
			// included.
			continue
		}
		if err := bypass(sat, isakmp.IPsecBypassBefore); err != nil {
			return nil, err
		}
		e, err := entryFrom(sat.Selector, sadb.Protect)
		if err != nil {
			return nil, fmt.Errorf("gm: TEK 0x%08x: %w", sat.SPI, err)
		}
		e.SPI = sat.SPI
		out = append(out, e)
		if err := bypass(sat, isakmp.IPsecBypassAfter); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// replacedAccepted is how long a GM accepts a TEK a rekey replaced that a
// registration handed it (ks/replaced.go): the rekey's deactivation delay
// (ks.RekeyDTD), counted from the registration, which comes after the
// rekey.
const replacedAccepted = 90 * time.Second

// replacedIn reports whether teks[i] is one a rekey replaced: another TEK
// of the download is for the same traffic and ends later (or, ending as
// late, is listed first).
func replacedIn(teks []sadb.TEK, i int) bool {
	for j := range teks {
		if j != i && sameTraffic(teks[j], teks[i]) &&
			(teks[j].Expires.After(teks[i].Expires) || (j < i && teks[j].Expires.Equal(teks[i].Expires))) {
			return true
		}
	}
	return false
}

// sameTraffic reports whether a and b are for the same traffic selector.
func sameTraffic(a, b sadb.TEK) bool {
	return a.IPProto == b.IPProto && a.Src == b.Src && a.Dst == b.Dst && a.SrcPort == b.SrcPort && a.DstPort == b.DstPort
}

func entryFrom(sel isakmp.Selector, a sadb.Action) (sadb.PolicyEntry, error) {
	e := sadb.PolicyEntry{Action: a, IPProto: sel.Protocol, SrcPort: sel.Src.Port, DstPort: sel.Dst.Port}
	var err error
	if e.Src, err = sel.Src.Prefix(); err != nil {
		return e, fmt.Errorf("source: %w", err)
	}
	if e.Dst, err = sel.Dst.Prefix(); err != nil {
		return e, fmt.Errorf("destination: %w", err)
	}
	return e, nil
}

func lifeOf(as isakmp.Attributes, t uint16, def time.Duration) time.Duration {
	if a, ok := as.Find(t); ok {
		if v, err := a.Uint(); err == nil && v > 0 {
			return time.Duration(min(v, 1<<31)) * time.Second
		}
	}
	return def
}

func tekFrom(sat *isakmp.SAT, kd *isakmp.KD, now time.Time) (sadb.TEK, error) {
	t := sadb.TEK{SPI: sat.SPI, Protocol: sat.Protocol, Transform: sat.TransformID, IPProto: sat.Selector.Protocol,
		SrcPort: sat.Src.Port, DstPort: sat.Dst.Port}
	if sat.Protocol != isakmp.TEKProtoESP {
		return t, fmt.Errorf("gm: TEK 0x%08x: protocol %s not supported (ESP only)", sat.SPI, sat.Protocol)
	}
	var err error
	if t.Src, err = sat.Src.Prefix(); err != nil {
		return t, fmt.Errorf("gm: TEK 0x%08x source: %w", sat.SPI, err)
	}
	if t.Dst, err = sat.Dst.Prefix(); err != nil {
		return t, fmt.Errorf("gm: TEK 0x%08x destination: %w", sat.SPI, err)
	}
	for _, a := range sat.Attributes {
		v, _ := a.Uint()
		switch isakmp.IPsecAttr(a.Type) {
		case isakmp.IPsecKeyLength:
			t.KeyBits = int(v)
		case isakmp.IPsecAuthAlgorithm:
			t.AuthAlg = uint16(v)
		case isakmp.IPsecEncapsulationMode:
			if v != uint64(isakmp.EncapTunnel) {
				return t, fmt.Errorf("gm: TEK 0x%08x: encapsulation mode %d not supported (tunnel only)", sat.SPI, v)
			}
		case isakmp.IPsecSADirection:
			t.ReceiveOnly = v == uint64(isakmp.SADirReceiverOnly)
		case isakmp.IPsecReplayMethod:
			t.ReplayMethod = uint16(v)
		case isakmp.IPsecReplayWindow:
			t.ReplayWindow = int(v)
		case isakmp.IPsecPseudotime:
			t.Pseudotime, t.PseudotimeAt = time.Duration(v)*time.Millisecond, now
		case isakmp.IPsecConfiguredLifetime:
			t.Configured = time.Duration(min(v, 1<<31)) * time.Second
		}
	}
	t.Lifetime = lifeOf(sat.Attributes, uint16(isakmp.IPsecSALifeDuration), 3600*time.Second)
	t.Expires = now.Add(t.Lifetime)
	if t.Configured == 0 {
		t.Configured = t.Lifetime
	}
	encLen, authLen := 0, 0
	switch isakmp.ESPTransform(sat.TransformID) {
	case isakmp.ESPAESCBC:
		encLen = t.KeyBits / 8
		authLen = map[uint16]int{isakmp.AuthAlgHMACSHA1: 20, isakmp.AuthAlgHMACSHA256: 32, isakmp.AuthAlgHMACSHA384: 48, isakmp.AuthAlgHMACSHA512: 64}[t.AuthAlg]
		if authLen == 0 {
			return t, fmt.Errorf("gm: TEK 0x%08x: AES-CBC without a supported HMAC", sat.SPI)
		}
	case isakmp.ESPAESGCM8, isakmp.ESPAESGCM12, isakmp.ESPAESGCM16, isakmp.ESPAESGMAC:
		encLen = t.KeyBits/8 + 4
	default:
		return t, fmt.Errorf("gm: TEK 0x%08x: transform %s not supported", sat.SPI, isakmp.ESPTransform(sat.TransformID))
	}
	if t.KeyBits != 128 && t.KeyBits != 192 && t.KeyBits != 256 {
		return t, fmt.Errorf("gm: TEK 0x%08x: key length %d", sat.SPI, t.KeyBits)
	}
	kp := kd.Packet(isakmp.KDTEK, binary.BigEndian.AppendUint32(nil, sat.SPI))
	if kp == nil {
		return t, fmt.Errorf("gm: no keys for TEK 0x%08x in the KD payload", sat.SPI)
	}
	if a, ok := kp.Attributes.Find(isakmp.TEKAlgorithmKey); ok && len(a.Data) == encLen {
		t.EncKey = a.Data
	} else {
		return t, fmt.Errorf("gm: TEK 0x%08x: TEK_ALGORITHM_KEY missing or not %d octets", sat.SPI, encLen)
	}
	if authLen > 0 {
		if a, ok := kp.Attributes.Find(isakmp.TEKIntegrityKey); ok && len(a.Data) == authLen {
			t.AuthKey = a.Data
		} else {
			return t, fmt.Errorf("gm: TEK 0x%08x: TEK_INTEGRITY_KEY missing or not %d octets", sat.SPI, authLen)
		}
	}
	return t, nil
}

func kekFrom(sak *isakmp.SAK, kd *isakmp.KD, now time.Time) (*sadb.KEK, error) {
	k := &sadb.KEK{SPI: sak.SPI, Installed: now}
	for _, a := range sak.Attributes {
		v, _ := a.Uint()
		switch isakmp.KEKAttr(a.Type) {
		case isakmp.KEKAlgorithm:
			k.Alg = isakmp.KEKAlg(v)
		case isakmp.KEKKeyLength:
			k.KeyBits = int(v)
		case isakmp.KEKSigAlgorithm:
			k.SigAlg = isakmp.SigAlg(v)
		case isakmp.KEKAckRequested:
			k.Ack = v == uint64(isakmp.AckKEKSHA256)
		}
	}
	k.Expires = now.Add(lifeOf(sak.Attributes, uint16(isakmp.KEKKeyLifetime), 86400*time.Second))
	if p, err := sak.Dst.Prefix(); err == nil && p.IsSingleIP() && p.Addr().IsMulticast() {
		k.Multicast = netip.AddrPortFrom(p.Addr(), sak.Dst.Port)
	}
	if k.Alg != isakmp.KEKAlgAES {
		return nil, fmt.Errorf("gm: KEK algorithm %s not supported (AES only)", k.Alg)
	}
	kp := kd.Packet(isakmp.KDKEK, sak.SPI[:])
	if kp == nil {
		return nil, errors.New("gm: no KEK key packet for the SAK's SPI")
	}
	key, ok := kp.Attributes.Find(isakmp.KEKAlgorithmKey)
	if !ok || len(key.Data) != 16+k.KeyBits/8 {
		return nil, fmt.Errorf("gm: KEK_ALGORITHM_KEY missing or not IV plus %d-bit key", k.KeyBits)
	}
	k.Key = key.Data
	if sig, ok := kp.Attributes.Find(isakmp.KEKSigKey); ok {
		k.SigKey = sig.Data
	}
	return k, nil
}

// jitterWindow is how long before the keys expire a GM re-registers
// (gdoi.ReregistrationWindow, which the KS times its rekeys by).
func jitterWindow(lifetime time.Duration) time.Duration {
	return gdoi.ReregistrationWindow(lifetime)
}

// ReregisterAt picks when to re-register for keys that expire at expires
// after lifetime: uniformly in [expires-2w, expires-w] for the jitter
// window w, from u in [0,1) (the caller's randomness).
func ReregisterAt(expires time.Time, lifetime time.Duration, u float64) time.Time {
	w := jitterWindow(lifetime)
	return expires.Add(-w - time.Duration(u*float64(w)))
}

// openOnlyBits is the width of a counter-mode TEK the member holds no
// sender ID for (a rekey's before a registration gave it some, one a
// rekey replaced handed out at registration): it only opens packets with
// it (no ID of its own: it never seals), telling the senders apart by
// the IV's whole top 32 bits whatever the width of their IDs in its
// generation (as carriedSIDs), each with its own replay window.
const openOnlyBits = 32

// carriedSIDs lays out the sender IDs a member carries into keys a rekey
// brought at 32 bits: the same IVs (an ID of w bits is the IV's top w
// bits, id<<(32-w) at 32 bits puts the same octets there, and the 32-bit
// ESP sequence number the member counts with fits below either), but the
// member now tells senders apart by the IV's whole top 32 bits. The KS may
// have chosen a wider width for the new keys (it widens them with the
// group, docs/wire.md): members registering under them hold wider IDs, and
// a member splitting the IV at its old, narrower width would put several
// of them in one replay window.
func carriedSIDs(sids []uint32, bits int) ([]uint32, int) {
	if bits < 1 || bits >= 32 {
		return sids, bits
	}
	out := make([]uint32, len(sids))
	for i, id := range sids {
		out[i] = id << (32 - bits)
	}
	return out, 32
}

// ApplyRekey installs what a verified GROUPKEY-PUSH carries: new TEKs
// (installed at once; old ones stay until they expire, so traffic in
// flight still decrypts), a new KEK replacing the old one, and Deletes
// (TEK SPIs, the KEK with protocol 0, or everything with SPI 0, RFC 6407
// §5.9). SID key packets are refused: they never travel in a push (§5.6.4).
func ApplyRekey(dp sadb.Dataplane, keks KEKStore, group string, groupID uint32, r *gdoi.Rekey, now time.Time) (*Installed, error) {
	out := &Installed{Seq: r.Seq}
	if r.KD != nil && r.KD.Packet(isakmp.KDSID, nil) != nil {
		return nil, errors.New("gm: a GROUPKEY-PUSH carried sender IDs (RFC 6407 §5.6.4 forbids it)")
	}
	if r.SA != nil {
		var sids []uint32
		bits := 0
		for _, t := range dp.TEKs() {
			if t.Group == group && len(t.SenderIDs) > 0 {
				sids, bits = t.SenderIDs, t.SIDBits // RFC 6054 App. B: keep the SID across rekeys
			}
		}
		if n := len(r.SA.TEKs); n > 0 {
			out.TEKs = make([]sadb.TEK, 0, n)
		}
		for _, sat := range r.SA.TEKs {
			t, err := tekFrom(sat, r.KD, now)
			if err != nil {
				return nil, err
			}
			t.Group, t.GroupID, t.Installed = group, groupID, now
			if t.AuthKey == nil {
				if len(sids) == 0 {
					// Sender IDs come only with a registration (RFC
					// 6407 §4.4): the GM receives with the TEK at once
					// and registers again to send with it (NeedSIDs),
					// rather than refusing the whole rekey (a policy
					// replace from CBC to GCM, issue 13).
					out.NeedSIDs = true
					t.SIDBits = openOnlyBits
				} else {
					t.SenderIDs, t.SIDBits = carriedSIDs(sids, bits)
				}
			}
			out.TEKs = append(out.TEKs, t)
			if out.Earliest.IsZero() || t.Expires.Before(out.Earliest) {
				out.Earliest, out.EarliestLifetime = t.Expires, t.Lifetime
			}
		}
		if r.SA.KEK != nil {
			k, err := kekFrom(r.SA.KEK, r.KD, now)
			if err != nil {
				return nil, err
			}
			k.Group, k.GroupID = group, groupID
			out.KEK = k
		}
		if len(r.SA.TEKs) > 0 {
			// A rekey brings a TEK for every permit entry: its SATs are the
			// whole new policy (a changed ACL reaches the GM here).
			pol, err := policyFrom(r.SA.TEKs, nil)
			if err != nil {
				return nil, err
			}
			out.Policy = pol
		}
	}
	// A GAP without a DEACTIVATION_TIME_DELAY (another vendor's KS may
	// send one) leaves the TEKs the new ones replace to run out, as a
	// rekey without a GAP does; before, it deactivated them at once, and
	// nothing could send until the activation delay. RFC 6407 §5.4 makes
	// both delays Basic (16 bits): a value sent as a TLV is taken if it
	// fits in 16 bits and ignored otherwise, as a malformed one is (read
	// as up to 8 octets of seconds, one wrapped around to 0 or put the
	// time 136 years ahead).
	atd, dtd, hasDTD := time.Duration(0), time.Duration(0), false
	if r.SA != nil && r.SA.GAP != nil {
		for _, a := range r.SA.GAP.Attributes {
			v, err := a.Uint()
			if err != nil || v > math.MaxUint16 {
				continue
			}
			switch isakmp.GAPAttr(a.Type) {
			case isakmp.GAPActivationTimeDelay:
				atd = time.Duration(v) * time.Second
			case isakmp.GAPDeactivationTimeDelay:
				dtd, hasDTD = time.Duration(v)*time.Second, true
			}
		}
	}
	if len(out.TEKs) > 0 && hasDTD {
		// The TEKs the new ones replace: the group's current ones with the
		// same traffic selector. They keep decrypting until DTD.
		for _, old := range dp.TEKs() {
			if old.Group != group {
				continue
			}
			for _, t := range out.TEKs {
				if t.Src == old.Src && t.Dst == old.Dst && t.IPProto == old.IPProto && old.Deactivate.IsZero() {
					old.Deactivate = now.Add(dtd)
					if old.Expires.Before(old.Deactivate) {
						old.Deactivate = old.Expires
					}
					dp.InstallTEK(old)
				}
			}
		}
	}
	for i := range out.TEKs {
		out.TEKs[i].SendFrom = now.Add(atd)
		if err := dp.InstallTEK(out.TEKs[i]); err != nil {
			return nil, err
		}
	}
	if out.KEK != nil {
		if err := keks.InstallKEK(*out.KEK); err != nil {
			return nil, err
		}
	}
	setPolicy(dp, group, out.Policy)
	for _, d := range r.Deletes {
		switch d.Protocol {
		case isakmp.ProtoGDOIKEK:
			keks.DeleteKEK(group)
		default:
			for _, spi := range d.SPIs {
				if len(spi) != 4 {
					continue
				}
				v := binary.BigEndian.Uint32(spi)
				for _, t := range dp.TEKs() {
					if t.Group == group && (v == 0 || t.SPI == v) {
						dp.DeleteTEK(group, t.SPI)
					}
				}
			}
		}
	}
	return out, nil
}
