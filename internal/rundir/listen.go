package rundir

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// ErrInUse: a process answers on the socket path (the daemon already runs).
var ErrInUse = errors.New("a process answers on the socket")

// ErrNotSocket: the path exists and is not a socket; it is left alone.
var ErrNotSocket = errors.New("exists and is not a socket; not removing it")

// Listen binds the unix socket of a daemon at path; network is "unix"
// (stream) or "unixpacket" (SOCK_SEQPACKET). A socket file nobody answers
// on (a daemon that died) is replaced; a live one is refused with
// ErrInUse, anything else at path with ErrNotSocket. A non-zero mode is
// the socket's permissions from its creation on (the umask is narrowed
// while binding, so no other user can connect in between).
func Listen(network, path string, mode os.FileMode) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s %w", path, ErrNotSocket)
		}
		c, err := net.DialTimeout(network, path, time.Second)
		switch {
		case err == nil:
			c.Close()
			return nil, fmt.Errorf("%s: %w", path, ErrInUse)
		case !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT):
			return nil, fmt.Errorf("socket %s exists and cannot be checked: %w", path, err)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("removing the stale socket %s: %w", path, err)
		}
	}
	if mode != 0 {
		old := syscall.Umask(int(^mode & 0o777))
		defer syscall.Umask(old)
	}
	ln, err := net.ListenUnix(network, &net.UnixAddr{Name: path, Net: network})
	if err != nil {
		return nil, err
	}
	if mode != 0 {
		if err := os.Chmod(path, mode); err != nil {
			ln.Close()
			return nil, fmt.Errorf("socket mode of %s: %w", path, err)
		}
	}
	return ln, nil
}
