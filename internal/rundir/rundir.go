// Package rundir names the runtime directory the daemons of the group
// `ike` share (SPEC D1): their unix sockets (srcmstr.sock, tmd.sock,
// iked.sock, isakmpd.sock) and srcmstr's logs live there.
package rundir

import (
	"os"
	"path/filepath"
)

// Env overrides the default directory (tests, a second instance).
const Env = "GROUPVPN_RUNDIR"

// Default is the directory when Env is not set.
const Default = "/run/groupvpn"

// Dir returns $GROUPVPN_RUNDIR, else /run/groupvpn.
func Dir() string {
	if d := os.Getenv(Env); d != "" {
		return d
	}
	return Default
}

// Socket returns the path of the unix socket of daemon name: Dir()/name.sock.
func Socket(name string) string { return filepath.Join(Dir(), name+".sock") }
