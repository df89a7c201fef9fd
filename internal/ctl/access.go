package ctl

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
)

// Peer is who sent a request on the control socket: the credentials the
// kernel recorded when the client connected (SO_PEERCRED), so a client
// cannot claim another user. Every handler finds it with PeerFrom.
type Peer struct {
	UID, GID uint32
	PID      int32
	User     string // the user name, or "uid=N" when it has none
	// ReadOnly: the peer is neither root nor the daemon's own user (a
	// member of the socket's group, see ListenGroup): it may run the
	// commands registered with HandleReadOnly only.
	ReadOnly bool
}

// Line is the peer as IOS's logs name a line: "vty (pid N)".
func (p Peer) Line() string { return fmt.Sprintf("vty (pid %d)", p.PID) }

type peerKey struct{}

// WithPeer returns ctx carrying p: the server does this for each
// connection; in-process callers (tests, the lab) may do it to act as p.
func WithPeer(ctx context.Context, p Peer) context.Context {
	return context.WithValue(ctx, peerKey{}, p)
}

// PeerFrom returns the peer of the request being served; false for an
// in-process caller that set none (the daemon itself: the console).
func PeerFrom(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}

// ConsoleUser is the user name of a request without a peer (in-process).
const ConsoleUser = "console"

// UserOf is the user name of ctx's peer, ConsoleUser without one.
func UserOf(ctx context.Context) string {
	if p, ok := PeerFrom(ctx); ok {
		return p.User
	}
	return ConsoleUser
}

// connPeer reads the credentials of a unix connection's client. A
// connection whose credentials cannot be read is read-only (fail safe).
func connPeer(c net.Conn) Peer {
	unknown := Peer{UID: ^uint32(0), GID: ^uint32(0), User: "unknown", ReadOnly: true}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return unknown
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return unknown
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || cerr != nil || cred == nil {
		return unknown
	}
	p := Peer{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid, User: "uid=" + strconv.FormatUint(uint64(cred.Uid), 10)}
	if u, err := user.LookupId(strconv.FormatUint(uint64(cred.Uid), 10)); err == nil && u.Username != "" {
		p.User = u.Username
	}
	p.ReadOnly = cred.Uid != 0 && int(cred.Uid) != os.Geteuid()
	return p
}

// ListenGroup binds the control socket like Listen; with a group name, the
// socket is mode 0660 and of that group, so its members may connect, with
// read-only access (Peer.ReadOnly). The socket's directory must let them
// reach it (search permission).
func ListenGroup(path, group string) (net.Listener, error) {
	if group == "" {
		return listenUnix(path, 0o600, -1)
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return nil, fmt.Errorf("ctl: socket group: %w", err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return nil, fmt.Errorf("ctl: socket group %s: gid %q", group, g.Gid)
	}
	return listenUnix(path, 0o660, gid)
}

// AuditFunc is told of every state-changing command (see HandleReadOnly)
// once it has run, or been refused to a read-only peer (denied): user is
// UserOf(ctx), line the command (for a configuration session's line, the
// line typed).
type AuditFunc func(ctx context.Context, user, line string, denied bool)

// SetAudit sets the function told of state-changing commands; nil removes it.
func (s *Server) SetAudit(f AuditFunc) {
	s.mu.Lock()
	s.audit = f
	s.mu.Unlock()
}

func (s *Server) auditFunc() AuditFunc {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.audit
}

// HandleReadOnly registers a command that changes nothing (show, terminal):
// read-only peers may run it. A command registered with Handle changes
// state: a read-only peer is refused it, and every run is audited.
func (s *Server) HandleReadOnly(pattern, help string, h Handler) {
	s.handle(pattern, help, h, true)
}

// errReadOnly is the refusal of a state-changing command to a read-only peer.
func errReadOnly(p Peer) string {
	return fmt.Sprintf("%% Permission denied: read-only access (user %s); this command changes state and needs the daemon's owner", p.User)
}

// maxAuditLine bounds the command an audit line quotes.
const maxAuditLine = 512

// auditText is line as an audit log quotes it: control characters become
// '?', and it is cut to maxAuditLine bytes.
func auditText(line string) string {
	if len(line) > maxAuditLine {
		line = strings.ToValidUTF8(line[:maxAuditLine], "") + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, line)
}
