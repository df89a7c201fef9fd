package tmd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/groupvpn/groupvpn/internal/rundir"
	"github.com/groupvpn/groupvpn/internal/sadb"
)

// Options configure a Server.
type Options struct {
	// Logger receives the server's log; nil discards it.
	Logger *slog.Logger
	// Now is the clock lifetimes are measured with; nil means time.Now.
	Now func() time.Time
	// Ready, when set, is called once the socket listens (the daemon
	// reports readiness to srcmstr then, SPEC D1).
	Ready func()
	// Limits bound what the socket's clients can hold; zero fields take
	// their defaults.
	Limits Limits
	// Backend receives the TEKs and policies (never the KEKs); nil
	// means a new MemoryBackend.
	Backend Backend
	// DataPlane, when set, reports the forwarding engine's counters
	// (status and counters answer them).
	DataPlane func() *DataPlaneCounters
	// KeyLog, when set, receives every TEK installed under a group and
	// SPI tmd did not hold, in Wireshark's ESP SA table format
	// (WriteKeyLog; `tmd -keylog FILE`). Off by default: whoever reads it
	// decrypts the group's traffic.
	KeyLog io.Writer
}

// Limits bound the API socket's connections: a process that connects and
// stays silent, trickles a line, or stops reading holds a bounded number
// of goroutines and buffers for a bounded time.
type Limits struct {
	// MaxConns is the number of connections served at once; one more is
	// answered with one error line and closed (Status.Refused). Default
	// DefaultMaxConns.
	MaxConns int
	// HelloTimeout is how long a new connection has to complete its
	// hello. Default DefaultHelloTimeout.
	HelloTimeout time.Duration
	// IdleTimeout closes an introduced connection that sends nothing for
	// that long (the IKE daemons' clients check tmd every
	// KeepaliveInterval, and redial). Default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// LineTimeout is how long a request line may take from its first
	// byte to its newline. Default DefaultLineTimeout.
	LineTimeout time.Duration
	// WriteTimeout bounds writing one response to a client that does not
	// read; the connection is then closed (Status.WriteFailed). Default
	// DefaultWriteTimeout.
	WriteTimeout time.Duration
}

// Defaults of Limits.
const (
	DefaultMaxConns     = 32
	DefaultHelloTimeout = 10 * time.Second
	DefaultIdleTimeout  = 5 * time.Minute
	DefaultLineTimeout  = 30 * time.Second
	DefaultWriteTimeout = 5 * time.Second
)

func (l Limits) withDefaults() Limits {
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultMaxConns
	}
	if l.HelloTimeout <= 0 {
		l.HelloTimeout = DefaultHelloTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.LineTimeout <= 0 {
		l.LineTimeout = DefaultLineTimeout
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = DefaultWriteTimeout
	}
	return l
}

// Server is tmd: it owns the SA database, serves the API on a unix socket
// and expires SA lifetimes (SPEC D1).
type Server struct {
	log *slog.Logger
	now func() time.Time
	// db is tmd's record of what the protocol daemons installed: TEKs,
	// KEKs, fail modes and policies (list answers from it). be is the
	// data plane the TEKs and policies are handed to; opMu serializes
	// the changes to both (requests of several connections, the expiry
	// loop).
	db   *sadb.Memory
	be   Backend
	opMu sync.Mutex
	// ready is Options.Ready.
	ready func()
	// dataPlane is Options.DataPlane.
	dataPlane func() *DataPlaneCounters
	// keyLog is Options.KeyLog (written under opMu).
	keyLog io.Writer
	limits Limits
	// wake nudges the expiry loop after an install (a new, maybe
	// earlier, deadline).
	wake chan struct{}

	mu        sync.Mutex
	started   time.Time
	malformed uint64
	refused   uint64 // connections over Limits.MaxConns
	timedOut  uint64 // connections closed by a hello, idle or line timeout
	writeFail uint64 // connections closed because a response could not be written
	open      int    // connections being served
	clients   map[*serverConn]ClientInfo
	// lastRefusalLog rate-limits the refusal warning.
	lastRefusalLog time.Time
	// fail mirrors the fail modes set in db: sadb.Memory cannot
	// enumerate them, and list reports them all.
	fail map[string]sadb.FailMode
}

// serverConn is one accepted connection.
type serverConn struct {
	c net.Conn
}

// NewServer returns a server with an empty SA database.
func NewServer(o Options) *Server {
	s := &Server{
		log:     o.Logger,
		now:     o.Now,
		ready:   o.Ready,
		limits:  o.Limits.withDefaults(),
		db:      sadb.NewMemory(),
		wake:    make(chan struct{}, 1),
		clients: map[*serverConn]ClientInfo{},
		fail:    map[string]sadb.FailMode{},
		be:      o.Backend,

		dataPlane: o.DataPlane,
		keyLog:    o.KeyLog,
	}
	if s.be == nil {
		s.be = NewMemoryBackend()
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.started = s.now()
	return s
}

// DB returns the SA database the server owns (the data plane reads it).
func (s *Server) DB() *sadb.Memory { return s.db }

// Status reports the server's state, as the status operation returns it.
func (s *Server) Status() Status {
	st := Status{
		PID:      os.Getpid(),
		API:      APIVersion,
		TEKs:     len(s.db.TEKs()),
		KEKs:     len(s.db.KEKs()),
		Policies: len(s.db.Policies()),
	}
	s.mu.Lock()
	st.Started = s.started
	st.Malformed = s.malformed
	st.Refused = s.refused
	st.TimedOut = s.timedOut
	st.WriteFailed = s.writeFail
	for _, ci := range s.clients {
		st.Clients = append(st.Clients, ci)
	}
	s.mu.Unlock()
	slices.SortFunc(st.Clients, func(a, b ClientInfo) int { return a.Since.Compare(b.Since) })
	if s.dataPlane != nil {
		st.DataPlane = s.dataPlane()
	}
	return st
}

// Counters returns each TEK's counters as the backend reports them (a TEK
// it cannot report on is left out), and the engine's when one runs.
func (s *Server) Counters() ([]TEKCounters, *DataPlaneCounters) {
	var out []TEKCounters
	for _, t := range s.db.TEKs() {
		c, err := s.be.QuerySA(t.Group, t.SPI)
		if err != nil {
			continue
		}
		out = append(out, TEKCounters{Group: t.Group, SPI: t.SPI, SACounters: c})
	}
	var dp *DataPlaneCounters
	if s.dataPlane != nil {
		dp = s.dataPlane()
	}
	return out, dp
}

// Serve listens on the unix socket path and serves until ctx is done; it
// then closes every connection, removes the socket and returns nil. It
// refuses to start when another tmd answers on path, and removes a stale
// socket file (left by a tmd that died) otherwise. The socket is mode 0600:
// only the IKE daemons' user may install keys.
func (s *Server) Serve(ctx context.Context, path string) error {
	l, err := listen(ctx, path)
	if err != nil {
		return err
	}
	s.log.Debug("tmd listening", "socket", path, "api", APIVersion)
	if s.ready != nil {
		s.ready()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { s.expireLoop(ctx) })
	go func() {
		<-ctx.Done()
		l.Close() // unlinks path: net.Listen set SetUnlinkOnClose(true)
	}()
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if rundir.RetryAccept(ctx.Done(), err, &delay) {
				if rundir.FirstRetry(delay) {
					s.log.Warn("tmd: accept failed; retrying", "err", err)
				}
				continue
			}
			if ctx.Err() != nil {
				break
			}
			cancel()
			wg.Wait()
			return fmt.Errorf("tmd: accept on %s: %w", path, err)
		}
		delay = 0
		s.mu.Lock()
		full := s.open >= s.limits.MaxConns
		if full {
			s.refused++
		} else {
			s.open++
		}
		s.mu.Unlock()
		if full {
			s.refuseConn(c)
			continue
		}
		sc := &serverConn{c: c}
		wg.Go(func() {
			s.serveConn(ctx, sc)
			s.mu.Lock()
			s.open--
			s.mu.Unlock()
		})
	}
	wg.Wait()
	return nil
}

// listen makes the socket at path (mode 0600), after checking that no
// tmd runs there.
func listen(ctx context.Context, path string) (*net.UnixListener, error) {
	l, err := rundir.Listen("unix", path, 0o600)
	if errors.Is(err, rundir.ErrInUse) {
		if pid, perr := probe(ctx, path); perr == nil {
			return nil, fmt.Errorf("tmd is already running on %s (pid %d)", path, pid)
		}
		return nil, fmt.Errorf("tmd: another process answers on %s", path)
	}
	if err != nil {
		return nil, fmt.Errorf("tmd: %w", err)
	}
	return l, nil
}

// probeName is the client name of a starting tmd checking for a running one.
const probeName = "tmd-probe"

// probe says hello to whatever listens on path and returns the pid of the
// tmd answering; an error wrapping ErrNotRunning when nothing listens.
func probe(ctx context.Context, path string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, _, resp, err := connect(ctx, path, Hello{API: APIVersion, Client: probeName, PID: os.Getpid()})
	if err != nil {
		return 0, err
	}
	conn.Close()
	return resp.PID, nil
}

// refuseConn answers a connection over Limits.MaxConns with one error
// line and closes it; it is logged at most once a minute.
func (s *Server) refuseConn(c net.Conn) {
	now := time.Now()
	s.mu.Lock()
	logIt := now.Sub(s.lastRefusalLog) >= time.Minute
	if logIt {
		s.lastRefusalLog = now
	}
	n := s.refused
	s.mu.Unlock()
	if logIt {
		s.log.Warn("tmd refused a connection: too many connections", "limit", s.limits.MaxConns, "refused_total", n)
	}
	b, _ := encodeLine(Response{Error: fmt.Sprintf("tmd: too many connections (limit %d); try again later", s.limits.MaxConns)})
	c.SetWriteDeadline(now.Add(100 * time.Millisecond))
	c.Write(b)
	c.Close()
}

// nextLine reads the next request line within the limits: before the
// hello the connection's deadline is the one set at accept (the hello must
// arrive within HelloTimeout, whatever else is sent first); after it the
// connection may stay silent for IdleTimeout, and a line, once begun, must
// end within LineTimeout.
func (s *Server) nextLine(sc *serverConn, rd *bufio.Reader, introduced bool) ([]byte, error) {
	if !introduced {
		return readLine(rd)
	}
	if rd.Buffered() == 0 {
		sc.c.SetReadDeadline(time.Now().Add(s.limits.IdleTimeout))
		if _, err := rd.Peek(1); err != nil {
			return nil, err
		}
	}
	sc.c.SetReadDeadline(time.Now().Add(s.limits.LineTimeout))
	return readLine(rd)
}

// serveConn runs one connection: the hello, then request after request.
func (s *Server) serveConn(ctx context.Context, sc *serverConn) {
	defer sc.c.Close()
	stop := context.AfterFunc(ctx, func() { sc.c.Close() })
	defer stop()
	rd := bufio.NewReaderSize(sc.c, 64<<10)
	sc.c.SetReadDeadline(time.Now().Add(s.limits.HelloTimeout))
	var hello *Hello
	for {
		line, err := s.nextLine(sc, rd, hello != nil)
		if err != nil && !errors.Is(err, errLineTooLong) {
			if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
				s.mu.Lock()
				s.timedOut++
				s.mu.Unlock()
				s.log.Debug("tmd closed a connection: read timeout", "introduced", hello != nil)
			}
			s.mu.Lock()
			delete(s.clients, sc)
			s.mu.Unlock()
			// Logged once the client is gone from Status.
			if hello != nil && hello.Client != probeName {
				s.log.Info("tmd client disconnected", "client", hello.Client, "pid", hello.PID)
			}
			return
		}
		resp, last := s.serveLine(sc, &hello, line, err)
		if resp != nil {
			s.write(sc, *resp)
		}
		if last {
			return
		}
	}
}

// maxClientName bounds the client name a hello may register (it is logged
// and listed by status).
const maxClientName = 64

// serveLine answers one line of a connection; err is the line reader's
// errLineTooLong or nil. *hello is the connection's hello, set here when
// the line is one. It returns the response (nil: none) and whether the
// connection ends after it.
func (s *Server) serveLine(sc *serverConn, hello **Hello, line []byte, err error) (*Response, bool) {
	var req Request
	if err == nil {
		if len(bytes.TrimSpace(line)) == 0 {
			return nil, false // tolerate blank lines
		}
		err = json.Unmarshal(line, &req)
	}
	if err != nil {
		return s.refuse(*hello, fmt.Errorf("malformed request: %w", err)), false
	}
	if *hello == nil {
		if req.Hello == nil {
			return s.refuse(nil, fmt.Errorf("malformed request: the first line must be a hello {\"hello\":{\"api\":%d,...}}", APIVersion)), false
		}
		h := *req.Hello
		if len(h.Client) > maxClientName {
			h.Client = h.Client[:maxClientName]
		}
		if h.API != APIVersion {
			msg := versionError(h.API)
			s.log.Warn("tmd client refused", "client", h.Client, "pid", h.PID, "err", msg)
			return &Response{Error: msg}, true
		}
		*hello = &h
		s.mu.Lock()
		s.clients[sc] = ClientInfo{Name: h.Client, PID: h.PID, Since: s.now()}
		s.mu.Unlock()
		if h.Client != probeName {
			s.log.Info("tmd client connected", "client", h.Client, "pid", h.PID)
		}
		return &Response{OK: true, API: APIVersion, Server: "tmd", PID: os.Getpid()}, false
	}
	if req.Hello != nil {
		return s.refuse(*hello, errors.New("malformed request: hello sent twice")), false
	}
	if req.Op == OpSetPolicy {
		if err := validatePolicy(req.Group, req.Policy); err != nil {
			return s.refuse(*hello, fmt.Errorf("malformed request: set-policy: %w", err)), false
		}
	}
	r := s.handle(*hello, req)
	return &r, false
}

// refuse counts a malformed line and returns its answer; the connection
// stays.
func (s *Server) refuse(hello *Hello, err error) *Response {
	s.mu.Lock()
	s.malformed++
	s.mu.Unlock()
	client := "(before hello)"
	if hello != nil {
		client = hello.Client
	}
	s.log.Warn("tmd refused a malformed request", "client", client, "err", err.Error())
	return &Response{Error: err.Error()}
}

func (s *Server) write(sc *serverConn, r Response) {
	b, err := encodeLine(r)
	if err != nil {
		b, _ = encodeLine(Response{Error: "tmd: encoding the response: " + err.Error()})
	}
	sc.c.SetWriteDeadline(time.Now().Add(s.limits.WriteTimeout))
	if _, err := sc.c.Write(b); err != nil {
		s.mu.Lock()
		s.writeFail++
		s.mu.Unlock()
		sc.c.Close() // the reader sees it and ends the connection
	}
}

// validatePolicy checks a set-policy request's policy: a named group, at
// most MaxPolicyEntries entries, each a permit (Protect, with the SPI of
// its TEK, or 0 before there is one: the fail-close bootstrap) or a deny
// (Bypass, SPI 0) between valid prefixes of one family.
func validatePolicy(group string, p []sadb.PolicyEntry) error {
	if group == "" {
		return errors.New("no group")
	}
	if len(p) > MaxPolicyEntries {
		return fmt.Errorf("%d entries (limit %d)", len(p), MaxPolicyEntries)
	}
	for i, e := range p {
		switch {
		case e.Action != sadb.Protect && e.Action != sadb.Bypass:
			return fmt.Errorf("entry %d: %s", i+1, e.Action)
		case !e.Src.IsValid() || !e.Dst.IsValid():
			return fmt.Errorf("entry %d: no source or destination prefix", i+1)
		case e.Src.Addr().Is4() != e.Dst.Addr().Is4():
			return fmt.Errorf("entry %d: source %s and destination %s of different families", i+1, e.Src, e.Dst)
		case e.Action == sadb.Bypass && e.SPI != 0:
			return fmt.Errorf("entry %d: deny with an SPI (%#08x)", i+1, e.SPI)
		}
	}
	return nil
}

// handle executes one request of an introduced client.
func (s *Server) handle(hello *Hello, req Request) Response {
	fail := func(err error) Response { return Response{Error: err.Error()} }
	if req.Op == OpStatus {
		st := s.Status()
		return Response{OK: true, Status: &st}
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	switch req.Op {
	case OpInstallTEK:
		if req.TEK == nil {
			return fail(errors.New("install-tek: no tek"))
		}
		if req.TEK.SPI == 0 {
			return fail(fmt.Errorf("sadb: TEK of group %s has SPI 0", req.TEK.Group))
		}
		op, isNew := s.be.AddSA, !s.hasTEK(req.TEK.Group, req.TEK.SPI)
		if !isNew {
			op = s.be.UpdateSA
		}
		if err := op(*req.TEK); err != nil {
			return fail(fmt.Errorf("install-tek: %w", err))
		}
		if err := s.db.InstallTEK(*req.TEK); err != nil {
			return fail(err)
		}
		s.log.Debug("TEK installed", "client", hello.Client, "group", req.TEK.Group, "spi", fmt.Sprintf("0x%08x", req.TEK.SPI))
		if isNew && s.keyLog != nil {
			if err := WriteKeyLog(s.keyLog, *req.TEK, s.now()); err != nil {
				s.log.Warn("TEK not written to the key log", "group", req.TEK.Group, "spi", fmt.Sprintf("0x%08x", req.TEK.SPI), "err", err.Error())
			}
		}
		s.nudge()
	case OpDeleteTEK:
		if !s.hasTEK(req.Group, req.SPI) {
			return fail(fmt.Errorf("sadb: group %s has no TEK with SPI 0x%08x", req.Group, req.SPI))
		}
		if err := s.be.DeleteSA(req.Group, req.SPI); err != nil {
			return fail(fmt.Errorf("delete-tek: %w", err))
		}
		if err := s.db.DeleteTEK(req.Group, req.SPI); err != nil {
			return fail(err)
		}
		s.log.Debug("TEK deleted", "client", hello.Client, "group", req.Group, "spi", fmt.Sprintf("0x%08x", req.SPI))
	case OpInstallKEK:
		if req.KEK == nil {
			return fail(errors.New("install-kek: no kek"))
		}
		if err := s.db.InstallKEK(*req.KEK); err != nil {
			return fail(err)
		}
		s.log.Debug("KEK installed", "client", hello.Client, "group", req.KEK.Group)
		s.nudge()
	case OpDeleteKEK:
		if err := s.db.DeleteKEK(req.Group); err != nil {
			return fail(err)
		}
		s.log.Debug("KEK deleted", "client", hello.Client, "group", req.Group)
	case OpSetFailMode:
		m, err := ParseFailMode(req.Mode)
		if err != nil {
			return fail(fmt.Errorf("set-fail-mode: %w", err))
		}
		if p := s.db.Policy(req.Group); p != nil && s.db.FailMode(req.Group) != m {
			if err := s.be.InstallPolicy(req.Group, p, m); err != nil {
				return fail(fmt.Errorf("set-fail-mode: %w", err))
			}
		}
		s.mu.Lock()
		s.fail[req.Group] = m
		s.db.SetFailMode(req.Group, m)
		s.mu.Unlock()
	case OpSetPolicy:
		// validatePolicy passed in serveLine.
		if len(req.Policy) == 0 {
			if err := s.be.RemovePolicy(req.Group); err != nil {
				return fail(fmt.Errorf("set-policy: %w", err))
			}
			s.db.SetPolicy(req.Group, nil)
			s.log.Debug("policy removed", "client", hello.Client, "group", req.Group)
			break
		}
		if err := s.be.InstallPolicy(req.Group, req.Policy, s.db.FailMode(req.Group)); err != nil {
			return fail(fmt.Errorf("set-policy: %w", err))
		}
		s.db.SetPolicy(req.Group, req.Policy)
		s.log.Debug("policy installed", "client", hello.Client, "group", req.Group, "entries", len(req.Policy))
	case OpFailMode:
		return Response{OK: true, Mode: s.db.FailMode(req.Group).String()}
	case OpList:
		r := Response{OK: true, TEKs: s.db.TEKs(), KEKs: s.db.KEKs(), FailModes: map[string]string{}, Policies: s.db.Policies()}
		s.mu.Lock()
		for g, m := range s.fail {
			r.FailModes[g] = m.String()
		}
		s.mu.Unlock()
		return r
	case OpCounters:
		sas, dp := s.Counters()
		if sas == nil {
			sas = []TEKCounters{}
		}
		return Response{OK: true, SACounters: sas, DataPlane: dp}
	case "":
		return fail(errors.New("request without op"))
	default:
		return fail(fmt.Errorf("unknown op %q (API version %d)", req.Op, APIVersion))
	}
	return Response{OK: true}
}

// nudge wakes the expiry loop to recompute its next deadline.
func (s *Server) nudge() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Sweep expires every SA whose lifetime ended at now: the database's
// Expire (sadb.TEK.Ended: a TEK at its Expires or, when set, its
// Deactivate, RFC 6407 §4.5: a replaced TEK is kept only until DTD; a KEK
// at its Expires; a zero time never), the one place an SA's lifetime is
// enforced, then the data plane deletes the expired TEKs. It returns the
// next deadline, zero when none. The expiry loop calls it; tests call it
// with their own clock.
func (s *Server) Sweep(now time.Time) (next time.Time) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	teks, keks, next := s.db.Expire(now)
	for _, t := range teks {
		reason := "lifetime"
		if t.Ends().Equal(t.Deactivate) {
			reason = "deactivated"
		}
		if err := s.be.DeleteSA(t.Group, t.SPI); err != nil {
			s.log.Warn("the data plane did not delete an expired TEK", "group", t.Group, "spi", fmt.Sprintf("0x%08x", t.SPI), "err", err.Error())
		}
		s.log.Info("TEK expired", "group", t.Group, "spi", fmt.Sprintf("0x%08x", t.SPI), "reason", reason)
	}
	for _, k := range keks {
		s.log.Info("KEK expired", "group", k.Group, "spi", fmt.Sprintf("%x", k.SPI))
	}
	return next
}

func (s *Server) hasTEK(group string, spi uint32) bool {
	for _, t := range s.db.TEKs() {
		if t.Group == group && t.SPI == spi {
			return true
		}
	}
	return false
}

// expireLoop runs Sweep at every deadline until ctx is done, whether or
// not a client is connected.
func (s *Server) expireLoop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := s.Sweep(s.now())
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(s.now()), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.wake:
		}
	}
}
