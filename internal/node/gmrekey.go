package node

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"net/netip"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/gm"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/syslog"
	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

// onPush handles a GROUPKEY-PUSH at a GM (RFC 6407 §4.4). The cheap
// checks come first: the KEK named by the cookies, then the sequence number
// (after the symmetric decryption, before the signature verification), and
// a retransmission identical to the last push accepted is answered without
// verifying it again. No state changes before the signature verifies.
func (n *Node) onPush(s *sock, from netip.AddrPort, data []byte, now time.Time) {
	h, err := isakmp.ParseHeader(data)
	if err != nil {
		n.stats.pushMalformed++
		return
	}
	var spi [isakmp.KEKSPILen]byte
	copy(spi[:8], h.InitiatorCookie[:])
	copy(spi[8:], h.ResponderCookie[:])
	var kek *sadb.KEK
	for _, k := range n.dp.KEKs() {
		if k.SPI == spi {
			k := k
			kek = &k
		}
	}
	var r *registration
	for _, x := range n.regs {
		if kek != nil && x.cfg.Name == kek.Group {
			r = x
		}
	}
	if kek == nil || r == nil {
		n.stats.pushUnknownKEK++
		return
	}
	pub, err := x509.ParsePKIXPublicKey(kek.SigKey)
	if err != nil {
		r.rekeysRejected++
		return
	}
	kk := gdoi.KEK{SPI: spi, Key: kek.Key}
	last := r.seq.Last(spi)
	digest := sha256.Sum256(data)
	var verdict gm.SeqVerdict
	rk, err := gdoi.OpenPushChecked(data, kk, pub, kek.SigAlg, func(seq uint32) error {
		// After the symmetric decryption, before the signature.
		switch verdict = r.seq.Check(spi, seq, digest); verdict {
		case gm.SeqRetransmit:
			return errRetransmitted // the very datagram already verified
		case gm.SeqStale:
			return gdoi.ErrPushStale
		}
		return nil
	})
	switch {
	case errors.Is(err, errRetransmitted):
		// The KS did not get our ACK.
		r.rekeysDuplicate++
		n.ack(r, kek, kk, last)
		return
	case errors.Is(err, gdoi.ErrPushStale):
		r.rekeysReplayed++
		syslog.Log(n.unauth, syslog.Warning, "GM_REKEY_REPLAY", "Rekey for group %s dropped: sequence number not above %d", r.cfg.Name, last)
		return
	case err != nil:
		r.rekeysRejected++
		syslog.Log(n.unauth, syslog.Warning, "GM_REKEY_REJECTED", "Rekey for group %s from %s rejected: %v", r.cfg.Name, from.Addr(), err)
		return
	}
	if verdict == gm.SeqDuplicate {
		// Verified, same sequence number, other octets: a retransmission
		// the KS built again (after a restart); acknowledged, not applied.
		r.rekeysDuplicate++
		n.ack(r, kek, kk, rk.Seq)
		return
	}
	removal, replace := notifyOf(rk, isakmp.NotifyGMRemoval), notifyOf(rk, isakmp.NotifyPolicyReplace)
	if removal != nil {
		r.seq.Accept(spi, rk.Seq, digest)
		if n.behavesOld() {
			// A 1.0.1 node does not know GM removal: it keeps its keys.
			n.log.Info("ignoring a GM-removal message: this node runs an older version", "group", r.cfg.Name, "version", n.version().String())
			return
		}
		r.rekeysReceived++
		n.ack(r, kek, kk, rk.Seq)
		n.removed(r, removal, now)
		return
	}
	inst, err := gm.ApplyRekey(n.dp, r.cfg.Name, r.cfg.ID, rk, now)
	if err != nil {
		r.rekeysRejected++
		syslog.Log(n.log, syslog.Err, "GM_INSTALL_POLICIES_FAILED", "FAILED: Installation of Rekey policies for group %s: %v", r.cfg.Name, err)
		return
	}
	r.seq.Accept(spi, rk.Seq, digest)
	r.rekeysReceived++
	r.lastRekey = now
	if inst.Policy != nil {
		r.bootstrap = false // the key server's policy replaced it
	}
	if inst.KEK != nil {
		r.seq.Reset(inst.KEK.SPI)
		n.joinRekeyGroup(r, inst.KEK)
	}
	if len(inst.TEKs) > 0 && r.installed != nil {
		r.installed.Earliest = inst.Earliest
		if inst.Policy != nil {
			r.installed.Policy = inst.Policy // the rekey's ACL (SPEC E3)
		}
		if r.state == regRegistered {
			r.next = gm.ReregisterAt(inst.Earliest, inst.TEKs[0].Lifetime, n.uniform())
		}
	}
	if inst.NeedSIDs && r.state == regRegistered {
		// A counter-mode TEK without a sender ID: register again at once
		// for one (the KS hands them out with the current keys).
		n.log.Info("counter-mode TEK received without a sender ID: registering again for one", "group", r.cfg.Name)
		r.next = now
	}
	syslog.Log(n.log, syslog.Notice, "GM_RECV_REKEY", "Received Rekey for group %s from %s to %s with seq # %d",
		r.cfg.Name, from.Addr(), s.local.Addr(), rk.Seq)
	if replace != nil && !n.behavesOld() {
		n.replaced(r, replace, inst, now)
	}
	n.ack(r, kek, kk, rk.Seq)
}

func notifyOf(rk *gdoi.Rekey, t isakmp.NotifyType) *isakmp.Notify {
	for _, nt := range rk.Notifies {
		if nt.NotifyType == t && len(nt.Data) == 1 && (nt.Data[0] == isakmp.ModeShorten || nt.Data[0] == isakmp.ModeNow) {
			return nt
		}
	}
	return nil
}

func (n *Node) version() version.Version {
	if v := n.o.IKE.Version; !v.IsZero() {
		return v
	}
	return version.Current
}

// behavesOld: a node announcing a version before GM removal and policy
// replace also behaves like one (SPEC V1).
func (n *Node) behavesOld() bool { return n.version().Less(ks.FeatureVersion) }

// removed carries out a GM-removal message (SPEC R2, R4).
func (n *Node) removed(r *registration, nt *isakmp.Notify, now time.Time) {
	g := r.cfg.Name
	clt := time.Duration(0)
	for _, t := range n.dp.TEKs() {
		if t.Group == g {
			clt = max(clt, t.Configured)
		}
	}
	n.dp.DeleteKEK(g)
	if nt.Data[0] == isakmp.ModeNow {
		for _, t := range n.dp.TEKs() {
			if t.Group == g {
				n.dp.DeleteTEK(g, t.SPI)
			}
		}
		// Fail-open or fail-close now applies: the GM holds no TEK.
		window := max(clt/50, time.Second) // 2% of the configured TEK lifetime
		wait := time.Duration(n.uniform() * float64(window))
		r.state, r.installed, r.sa, r.pull = regIdle, nil, nil, nil
		r.temporary = time.Time{} // no key left to send with meanwhile
		r.next = now.Add(wait)
		syslog.Log(n.log, syslog.Warning, "GM_RECV_DELETE_IMMEDIATE",
			"GM receive REMOVAL-NOW in group %s to cleanup downloaded policy now. Re-registration will start in a randomly chosen period of %d sec",
			g, int(wait.Round(time.Second)/time.Second))
		return
	}
	earliest := gm.Shorten(n.dp, g, nil, now)
	syslog.Log(n.log, syslog.Warning, "GM_RECV_DELETE",
		"GM received delete-msg from KS in group %s. TEKs lifetime are reduced and re-registration will start before SA expiry", g)
	if earliest.IsZero() {
		r.state, r.installed, r.next = regIdle, nil, now
		return
	}
	if r.installed != nil {
		r.installed.Earliest = earliest
		r.installed.KEK = nil
	}
	r.temporary = earliest
	r.next = gm.ReregisterBefore(earliest, now, clt, n.uniform())
}

// replaced carries out the policy-replace instruction of a rekey (SPEC P3,
// P4): the SAs the rekey did not bring are shortened, or deleted at once.
func (n *Node) replaced(r *registration, nt *isakmp.Notify, inst *gm.Installed, now time.Time) {
	keep := map[uint32]bool{}
	for _, t := range inst.TEKs {
		keep[t.SPI] = true
	}
	g := r.cfg.Name
	if nt.Data[0] == isakmp.ModeNow {
		for _, t := range n.dp.TEKs() {
			switch {
			case t.Group != g:
			case !keep[t.SPI]:
				n.dp.DeleteTEK(g, t.SPI)
			case t.SendFrom.After(now):
				// The new policy is used at once (SPEC P4): no
				// activation delay, nothing else is left to send with.
				t.SendFrom = now
				n.dp.InstallTEK(t)
			}
		}
		n.log.Info("policy replaced now: old SAs deleted", "group", g)
		return
	}
	gm.Shorten(n.dp, g, keep, now)
	n.log.Info("policy replaced: old SAs shortened", "group", g)
}

// ack acknowledges a rekey (RFC 8263) to the key server the GM registered
// with, whatever the datagram's source said: a replayed push from a forged
// source must not make the GM send anything anywhere else.
func (n *Node) ack(r *registration, kek *sadb.KEK, kk gdoi.KEK, seq uint32) {
	if !kek.Ack || r.sock == nil || !r.regKS.IsValid() {
		return
	}
	if r.dropAcks {
		return // test hook: a GM whose ACKs are lost
	}
	b, err := gdoi.Ack(kk, seq, r.sock.local.Addr())
	if err != nil {
		return
	}
	r.acksSent++
	n.send(r.sock, r.regKS, b)
}

// errRetransmitted: a push identical to the last one accepted.
var errRetransmitted = errors.New("node: the last rekey again")

// RekeyStats is a GM group's rekey counters.
type RekeyStats struct {
	Received, Duplicate, Replayed, Rejected, AcksSent int
	LastRekey                                         time.Time
}
