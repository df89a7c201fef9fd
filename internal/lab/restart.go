package lab

import (
	"errors"
	"fmt"

	"github.com/groupvpn/groupvpn/internal/dataplane"
	"github.com/groupvpn/groupvpn/internal/sadb"
)

// Restarts as `kill -9` and a start again: the node's goroutine ends at
// once (Node.Run returns on its context without saving or sending
// anything), its sockets close, and only what it had written survives: the
// key server's state file (Options.State), a member's SA database. The
// lab's SA database of a member plays tmd, which keeps the keys and the
// engine running while isakmpd (the GM's control plane) is down.

// KillKS stops the key server as kill -9 would; StartKS starts it again.
// The lab's Close still stops everything.
func (l *Lab) KillKS() error {
	if l.kss[0].store == nil {
		return errors.New("lab: the key server keeps no state (Options.State)")
	}
	return l.KillKSN(0)
}

// StartKS starts a key server killed by KillKS from its configuration and
// state file, on the same address, port and control socket.
func (l *Lab) StartKS() error { return l.StartKSN(0) }

// KillKSN stops key server i (0-based) as kill -9 would. A key server
// without a state file (Options.State) comes back from its configuration
// alone: a cooperative one then takes the policy, keys and members of the
// primary it finds (coop.go).
func (l *Lab) KillKSN(i int) error {
	if i < 0 || i >= len(l.kss) {
		return fmt.Errorf("lab: no key server %d", i+1)
	}
	k := l.kss[i]
	if k.down {
		return fmt.Errorf("lab: %s is not running", k.name)
	}
	k.proc.kill()
	if k.store != nil {
		k.store.Close() // as the kernel closes its file and drops its lock
		k.store = nil
	}
	k.down = true
	return nil
}

// StartKSN starts key server i killed by KillKSN, on the same address,
// port and control socket.
func (l *Lab) StartKSN(i int) error {
	if i < 0 || i >= len(l.kss) {
		return fmt.Errorf("lab: no key server %d", i+1)
	}
	k := l.kss[i]
	if !k.down {
		return fmt.Errorf("lab: %s is running", k.name)
	}
	d, err := k.new()
	if err != nil {
		return err
	}
	k.d, k.down = d, false
	if i == 0 {
		l.KS = d
	}
	k.proc = l.run(l.ctx, d, k.socket)
	return nil
}

// KillGM stops member i's (0-based) control plane (its isakmpd) as kill -9
// would; its SA database and, with Options.DataPlane, its engine keep
// running. StartGM starts it again.
func (l *Lab) KillGM(i int) error {
	if i < 0 || i >= len(l.GMs) {
		return fmt.Errorf("lab: no member %d", i)
	}
	l.gmProcs[i].kill()
	return nil
}

// StartGM starts member i's control plane killed by KillGM with its
// configuration and the SA database it left; it registers at once.
func (l *Lab) StartGM(i int) error {
	if i < 0 || i >= len(l.GMs) {
		return fmt.Errorf("lab: no member %d", i)
	}
	select {
	case <-l.gmProcs[i].done:
	default:
		return fmt.Errorf("lab: gm%d is running", i+1)
	}
	d, err := l.gmNew[i](false)
	if err != nil {
		return err
	}
	l.GMs[i] = d
	l.gmProcs[i] = l.run(l.ctx, d, l.Sockets[fmt.Sprintf("gm%d", i+1)])
	return nil
}

// RebootGM is member i's (0-based) router rebooted: its control plane
// stopped as by KillGM, every TEK and KEK of its SA database gone (with
// Options.DataPlane; without, StartGM's control plane has a new one
// anyway), then started again: it registers as a member that holds no
// key.
func (l *Lab) RebootGM(i int) error {
	if err := l.KillGM(i); err != nil {
		return err
	}
	if i < len(l.sadbs) {
		db := l.sadbs[i]
		for _, t := range db.TEKs() {
			if err := db.DeleteTEK(t.Group, t.SPI); err != nil {
				return fmt.Errorf("lab: gm%d: %w", i+1, err)
			}
		}
		for _, k := range db.KEKs() {
			if err := db.DeleteKEK(k.Group); err != nil {
				return fmt.Errorf("lab: gm%d: %w", i+1, err)
			}
		}
	}
	return l.StartGM(i)
}

// SATEKs is member i's (0-based) TEKs as its SA database holds them (with
// Options.DataPlane).
func (l *Lab) SATEKs(i int) ([]sadb.TEK, error) {
	if i < 0 || i >= len(l.sadbs) {
		return nil, errors.New("lab: no such member's SA database")
	}
	return l.sadbs[i].TEKs(), nil
}

// EngineStats is member i's (0-based) engine counters (Options.DataPlane).
func (l *Lab) EngineStats(i int) (dataplane.Stats, error) {
	if l.dpDone == nil || i < 0 || i >= len(l.dp) {
		return dataplane.Stats{}, errors.New("lab: no such member's engine")
	}
	return l.dp[i].eng.Stats(), nil
}
