// Package sdnotify is the service side of systemd's readiness protocol
// (sd_notify(3)): one datagram, "READY=1" and friends, written to the
// AF_UNIX socket systemd names in $NOTIFY_SOCKET for a unit of
// Type=notify. It is the whole protocol groupvpn needs, without a
// dependency: srcmstr sends READY=1 once its control socket listens, so
// the unit's ExecStartPost (`startsrc -g ike`) runs against a controller
// that answers, instead of after a guessed sleep.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// Ready is the state a service sends once it serves.
const Ready = "READY=1"

// Stopping is the state a service sends when it begins to shut down.
const Stopping = "STOPPING=1"

// Notify sends state (newline-separated VAR=value assignments) to the
// socket path socket, the value of $NOTIFY_SOCKET. An empty socket means
// the process was not started by systemd as Type=notify: Notify does
// nothing and reports false. A leading '@' names a socket in the abstract
// namespace, as systemd may pass it.
func Notify(socket, state string) (sent bool, err error) {
	if socket == "" {
		return false, nil
	}
	if !strings.HasPrefix(socket, "/") && !strings.HasPrefix(socket, "@") {
		return false, fmt.Errorf("sdnotify: NOTIFY_SOCKET %q is neither a path nor an abstract socket", socket)
	}
	if state == "" {
		return false, errors.New("sdnotify: empty state")
	}
	// Go maps a leading '@' to the abstract namespace's NUL byte.
	addr := &net.UnixAddr{Name: socket, Net: "unixgram"}
	c, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return false, fmt.Errorf("sdnotify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sdnotify: %w", err)
	}
	return true, nil
}
