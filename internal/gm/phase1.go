package gm

import (
	"net/netip"

	"github.com/groupvpn/groupvpn/internal/gdoi"
)

// Phase1 is the phase-1 SA a registration runs over, as the member sees
// it: it protects and unprotects the GROUPKEY-PULL messages
// (gdoi.Protector), names the key server it was established with, and
// forgets a finished exchange's state. An IKEv1 *ike.SA is one as it is;
// an IKEv2 SA can stand behind it later. The member never holds the
// endpoint, sockets or timers of the SA: it asks its owner for a phase 1
// (Result.Connect) and is told when one is up or gone.
type Phase1 interface {
	gdoi.Protector
	// Peer is the key server's address the SA was established with.
	Peer() netip.AddrPort
	// ForgetMessageID drops the per-exchange state (the IV chain) of a
	// finished phase-2 exchange.
	ForgetMessageID(mid uint32)
}
