package ikev2d

import (
	"log/slog"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/kswriter"
)

// saver writes the key server's state off the loop (SPEC O4, issue 17
// finding 5) with isakmpd's writer, kswriter.Writer. Registrations only
// change bookkeeping (members): the loop marks the group dirty and, at
// most once per ks.SaveInterval, queues the group's state with the
// members changed since the last (ks.Server.DeltaState), merged per group
// until the writer goroutine saves it with SaveGroup. The
// writes crash safety needs before something is sent (SaveKeysOrdered
// before a registration's Sender-IDs or a rekey leave, SaveGroup at a
// removal) are made at once by the loop, one transaction at a time with
// the writer's, and replace the group's queued (older) state: Options.Store
// is any ks.Store, not one that keeps the newer keys whatever lands last.
type saver struct{ *kswriter.Writer }

func newSaver(st ks.Store, log *slog.Logger) *saver {
	return &saver{kswriter.New(st, log)}
}

// run is the writer goroutine's body (router.go starts it).
func (s *saver) run(stop <-chan struct{}) { s.Run(stop) }
