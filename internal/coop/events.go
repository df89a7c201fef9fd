package coop

import (
	"fmt"
	"net/netip"

	"github.com/groupvpn/groupvpn/internal/mnemonic"
)

// Event is something the owner logs (Log gives the IOS-like line) or acts
// on (RoleChanged, Adopt).
//
// Mnemonics: COOP_KS_ADD, COOP_KS_REMOVE, COOP_KS_ELECTION, COOP_KS_TRANS_TO_PRI,
// COOP_KS_REACH, COOP_KS_UNREACH and COOP_KS_UNAUTH are names IOS logs,
// with texts modelled on IOS's; COOP_KS_TRANS_TO_SEC and COOP_KS_ADOPT are
// groupvpn's own (IOS's name for these, if any, is not known to us).
// Accepted has no line.
type Event interface {
	// Log returns the severity, mnemonic and text of the event's log
	// line (for mnemonic.Log); mnem "" means nothing to log.
	Log() (sev mnemonic.Severity, mnem, text string)
}

func prev(a netip.Addr) string {
	if !a.IsValid() {
		return "NONE"
	}
	return a.String()
}

// PeerAdded: a configured peer KS (at Start, or added by SetPeers).
type PeerAdded struct {
	Group string
	Peer  netip.Addr
}

func (e PeerAdded) Log() (mnemonic.Severity, string, string) {
	return mnemonic.Notice, "COOP_KS_ADD", fmt.Sprintf("%s added as COOP Key Server in group %s.", e.Peer, e.Group)
}

// PeerRemoved: a peer KS left the configuration (SetPeers).
type PeerRemoved struct {
	Group string
	Peer  netip.Addr
}

func (e PeerRemoved) Log() (mnemonic.Severity, string, string) {
	return mnemonic.Notice, "COOP_KS_REMOVE", fmt.Sprintf("%s removed as COOP Key Server in group %s.", e.Peer, e.Group)
}

// PeerReachable: an announcement was accepted from a peer that was not
// reachable.
type PeerReachable struct {
	Group string
	Peer  netip.Addr
}

func (e PeerReachable) Log() (mnemonic.Severity, string, string) {
	return mnemonic.Notice, "COOP_KS_REACH", fmt.Sprintf("Reachability restored with Cooperative KS %s in group %s.", e.Peer, e.Group)
}

// PeerUnreachable: a peer was silent for the dead interval.
type PeerUnreachable struct {
	Group string
	Peer  netip.Addr
}

func (e PeerUnreachable) Log() (mnemonic.Severity, string, string) {
	return mnemonic.Err, "COOP_KS_UNREACH", fmt.Sprintf("Cooperative KS %s Unreachable in group %s.", e.Peer, e.Group)
}

// Unauthorized: an announcement from an address that is not a configured
// peer (dropped; at most one event per announcement period).
type Unauthorized struct {
	Group       string
	Peer, Local netip.Addr
}

func (e Unauthorized) Log() (mnemonic.Severity, string, string) {
	return mnemonic.Warning, "COOP_KS_UNAUTH", fmt.Sprintf("Contact from unauthorized KS %s in group %s at local address %s (Possible MISCONFIG of peer/local address)", e.Peer, e.Group, e.Local)
}

// ElectionStarted: no primary is reachable; this KS elects.
type ElectionStarted struct {
	Group    string
	Previous netip.Addr // the primary followed before, if any
}

func (e ElectionStarted) Log() (mnemonic.Severity, string, string) {
	return mnemonic.Notice, "COOP_KS_ELECTION", fmt.Sprintf("KS entering election mode in group %s (Previous Primary = %s)", e.Group, prev(e.Previous))
}

// RoleChanged: this KS's role changed. To Primary: the owner starts
// creating keys and sending rekeys (ks.Delivery's schedule). To Secondary:
// it stops them and follows Primary.
type RoleChanged struct {
	Group    string
	Local    netip.Addr
	From, To Role
	Primary  netip.Addr // the primary now
	Previous netip.Addr // the primary before
}

func (e RoleChanged) Log() (mnemonic.Severity, string, string) {
	if e.To == Primary {
		return mnemonic.Notice, "COOP_KS_TRANS_TO_PRI", fmt.Sprintf("KS %s in group %s transitioned to Primary (Previous Primary = %s)", e.Local, e.Group, prev(e.Previous))
	}
	return mnemonic.Notice, "COOP_KS_TRANS_TO_SEC", fmt.Sprintf("KS %s in group %s transitioned to Secondary (Primary = %s)", e.Local, e.Group, prev(e.Primary))
}

// Adopt: this KS, secondary, follows a primary it did not follow before
// (at start, after a failover, or having lost a merge: Reason "merge"); the
// owner takes the primary's policy and keys from its last announcement
// (they travel beside the election's fields) so that members registering
// here get the primary's keys. Merging them is the owner's job.
type Adopt struct {
	Group             string
	Primary, Previous netip.Addr
	Reason            string
}

func (e Adopt) Log() (mnemonic.Severity, string, string) {
	return mnemonic.Notice, "COOP_KS_ADOPT", fmt.Sprintf("KS in group %s adopts the policy and keys of Primary %s (%s)", e.Group, e.Primary, e.Reason)
}

// Accepted: an announcement was accepted (the owner may take member lists
// and versions from it). No log line.
type Accepted struct {
	From netip.Addr
	Ann  Announcement
}

func (Accepted) Log() (mnemonic.Severity, string, string) { return 0, "", "" }
