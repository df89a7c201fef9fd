package lab

import (
	"errors"
	"fmt"

	"github.com/groupvpn/groupvpn/internal/dataplane"
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
	if l.store == nil {
		return errors.New("lab: the key server keeps no state (Options.State)")
	}
	l.ksProc.kill()
	l.store.Close() // as the kernel closes its file and drops its lock
	l.store = nil
	return nil
}

// StartKS starts a key server killed by KillKS from its configuration and
// state file, on the same address, port and control socket.
func (l *Lab) StartKS() error {
	if l.store != nil {
		return errors.New("lab: the key server is running")
	}
	d, err := l.ksNew()
	if err != nil {
		return err
	}
	l.KS = d
	l.ksProc = l.run(l.ctx, d, l.Sockets["ks"])
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

// EngineStats is member i's (0-based) engine counters (Options.DataPlane).
func (l *Lab) EngineStats(i int) (dataplane.Stats, error) {
	if l.dpDone == nil || i < 0 || i >= len(l.dp) {
		return dataplane.Stats{}, errors.New("lab: no such member's engine")
	}
	return l.dp[i].eng.Stats(), nil
}
