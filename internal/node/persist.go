package node

import "github.com/groupvpn/groupvpn/internal/ks"

// Store keeps the key server's state across restarts (SPEC O4):
// *store.Store, or a test's.
//
// Its SaveGroup and SaveKeys must not lower a group's stored Seq: a state
// with a lower Seq than the stored one writes its members at most, never
// its keys (kswriter.Writer's SaveKeys, the node's writer, relies on
// it; *store.Store keeps it). Nor may they lower a key's stored
// sender-ID high-water mark (ks.TEKState.SIDReserved): the node writes a
// raised mark with SaveKeys before the registration answer whose IDs
// raised it (pullPolicy.writeSIDReservations), and the writer's periodic
// save, taken before, may land after it (*store.Store keeps the higher
// mark of a key, by SPI).
type Store interface {
	ks.Store
	// IntegrityFailures counts the records refused as damaged.
	IntegrityFailures() uint64
}
