package rundir

import (
	"context"
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
// the socket's permissions, never wider from its creation on: bind
// creates the file with mode less the umask (listenConfig), then it is
// set to mode.
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
	l, err := listenConfig(mode).Listen(context.Background(), network, path)
	if err != nil {
		return nil, err
	}
	ln := l.(*net.UnixListener)
	if mode != 0 {
		if err := os.Chmod(path, mode); err != nil {
			ln.Close()
			return nil, fmt.Errorf("socket mode of %s: %w", path, err)
		}
	}
	return ln, nil
}

// listenConfig binds a unix socket whose file bind creates with mode less
// the umask (mode 0: the umask alone): the socket's own inode is given
// mode before bind, which Linux's unix_bind takes the new file's mode
// from. The process's umask is left alone: narrowing it while binding
// (as this did before) narrowed every file another goroutine created
// meanwhile, and two binds at once left it narrowed for good (a test's
// 0644 key log was once created 0600 so).
func listenConfig(mode os.FileMode) *net.ListenConfig {
	lc := &net.ListenConfig{}
	if mode != 0 {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var err error
			if cerr := c.Control(func(fd uintptr) { err = syscall.Fchmod(int(fd), uint32(mode.Perm())) }); cerr != nil {
				return cerr
			}
			if err != nil {
				return fmt.Errorf("socket mode before bind: %w", err)
			}
			return nil
		}
	}
	return lc
}
