package tmd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/groupvpn/groupvpn/internal/sadb"
)

// ErrNotRunning is wrapped by the errors of Dial (and of a client's
// writes) when nothing listens on the tmd socket. SPEC D2: a protocol
// daemon started while tmd is not running fails with a message saying to
// start tmd first.
var ErrNotRunning = errors.New("tmd is not running")

// notRunningError is ErrNotRunning with the socket and the system error.
type notRunningError struct {
	path  string
	cause error // syscall.ENOENT or syscall.ECONNREFUSED
}

func (e *notRunningError) Error() string {
	where := "no socket at " + e.path
	if errors.Is(e.cause, syscall.ECONNREFUSED) {
		where = "nothing listens on " + e.path
	}
	return fmt.Sprintf("%v (%s): start it first: startsrc -s tmd", ErrNotRunning, where)
}

func (e *notRunningError) Unwrap() []error { return []error{ErrNotRunning, e.cause} }

// RequestTimeout bounds one request to tmd, its answer included.
const RequestTimeout = 2 * time.Second

// connect dials path and exchanges the hello.
func connect(ctx context.Context, path string, h Hello) (net.Conn, *bufio.Reader, Response, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, nil, Response{}, &notRunningError{path: path, cause: err}
		}
		return nil, nil, Response{}, fmt.Errorf("tmd: dial %s: %w", path, err)
	}
	rd := bufio.NewReaderSize(conn, 64<<10)
	deadline := time.Now().Add(RequestTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	resp, err := roundTrip(conn, rd, Request{Hello: &h}, deadline)
	if err == nil && !resp.OK {
		err = fmt.Errorf("tmd refused the connection: %s", resp.Error)
	}
	if err != nil {
		conn.Close()
		return nil, nil, Response{}, err
	}
	return conn, rd, resp, nil
}

// roundTrip writes one request line and reads its response line. A
// response carrying an error is returned as is, not as err: err is a
// transport failure.
func roundTrip(conn net.Conn, rd *bufio.Reader, req Request, deadline time.Time) (Response, error) {
	b, err := encodeLine(req)
	if err != nil {
		return Response{}, fmt.Errorf("tmd: encoding %s: %w", req.Op, err)
	}
	if len(b) > MaxLine {
		return Response{}, fmt.Errorf("tmd: %s request of %d bytes exceeds the %d-byte line limit", req.Op, len(b), MaxLine)
	}
	conn.SetDeadline(deadline)
	if _, err := conn.Write(b); err != nil {
		return Response{}, fmt.Errorf("tmd: sending %s: %w", opName(req), err)
	}
	line, err := readLine(rd)
	if err != nil {
		return Response{}, fmt.Errorf("tmd: reading the answer to %s: %w", opName(req), err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return Response{}, fmt.Errorf("tmd: malformed answer to %s: %w", opName(req), err)
	}
	return resp, nil
}

func opName(r Request) string {
	if r.Hello != nil {
		return "hello"
	}
	return r.Op
}

// Client is a protocol daemon's connection to tmd, and the sadb.Dataplane
// the daemon installs its SAs into (SPEC D1). It keeps a mirror of the
// database, loaded from tmd at Dial (so that a restarted daemon sees the
// SAs tmd kept) and updated by every write. Writes go to tmd first; on a
// broken connection the client redials once, pushes its whole mirror (tmd
// may have restarted empty) and retries. While tmd stays unreachable
// writes are kept in the mirror, logged, and their error returned, and
// the keepalive (every KeepaliveInterval) reconnects and pushes the mirror
// as soon as tmd answers again. Reads (TEKs, KEKs, FailMode, Policy,
// Policies) never ask tmd: they answer from the mirror, so the node's
// event loop never waits on tmd; Fetch asks tmd and makes the mirror what
// tmd holds. Safe for concurrent use: requests are serialized on the one
// connection.
type Client struct {
	path, name string
	log        *slog.Logger
	now        func() time.Time

	mu     sync.Mutex
	conn   net.Conn // nil while disconnected
	rd     *bufio.Reader
	closed bool
	mirror *sadb.Memory
	fail   map[string]sadb.FailMode // the mirror's fail modes, for pushing
	stop   chan struct{}            // closed by Close: the keepalive ends
}

var (
	_ sadb.Remote      = (*Client)(nil)
	_ sadb.PolicyStore = (*Client)(nil)
	_ sadb.Expirer     = (*Client)(nil)
)

// ErrClosed is returned by the requests of a closed client.
var ErrClosed = errors.New("tmd: client closed")

// Dial connects to tmd on path as the daemon name, says hello and loads
// the mirror from tmd's database. When nothing listens it returns an error
// wrapping ErrNotRunning ("tmd is not running (no socket at PATH): start
// it first: startsrc -s tmd").
func Dial(ctx context.Context, path, name string, logger *slog.Logger) (*Client, error) {
	return dialKeepalive(ctx, path, name, logger, KeepaliveInterval)
}

// dialKeepalive is Dial with the keepalive interval; 0 runs none (tests).
func dialKeepalive(ctx context.Context, path, name string, logger *slog.Logger, keepalive time.Duration) (*Client, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{path: path, name: name, log: logger, now: time.Now, mirror: sadb.NewMemory(), fail: map[string]sadb.FailMode{}}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.connectLocked(ctx); err != nil {
		return nil, err
	}
	resp, err := c.requestLocked(ctx, Request{Op: OpList}, false)
	if err != nil {
		c.conn.Close()
		return nil, fmt.Errorf("tmd: loading the SA database: %w", err)
	}
	c.resyncLocked(resp)
	logger.Info("connected to tmd", "socket", path, "teks", len(resp.TEKs), "keks", len(resp.KEKs))
	c.stop = make(chan struct{})
	if keepalive > 0 {
		go c.watch(keepalive)
	}
	return c, nil
}

// KeepaliveInterval is how often a client checks that tmd is there. When
// tmd restarted (empty), the check reconnects and writes the SAs back at
// once, not only at the daemon's next SA change.
const KeepaliveInterval = 2 * time.Second

// watch asks tmd for its status every interval until Close; a failed
// request reconnects and pushes the mirror (requestLocked).
func (c *Client) watch(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	lost := false
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.mu.Lock()
		ctx, cancel := context.WithTimeout(context.Background(), RequestTimeout)
		_, err := c.requestLocked(ctx, Request{Op: OpStatus}, true)
		cancel()
		c.mu.Unlock()
		switch {
		case errors.Is(err, ErrClosed):
			return
		case err != nil && !lost:
			c.log.Error("tmd unreachable; keeping the SAs locally and retrying", "socket", c.path, "every", interval.String(), "err", err.Error())
			lost = true
		case err == nil && lost:
			c.log.Info("tmd reachable again; SAs written back", "socket", c.path)
			lost = false
		}
	}
}

func (c *Client) connectLocked(ctx context.Context) error {
	conn, rd, _, err := connect(ctx, c.path, Hello{API: APIVersion, Client: c.name, PID: os.Getpid()})
	if err != nil {
		return err
	}
	c.conn, c.rd = conn, rd
	return nil
}

func (c *Client) dropLocked() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.rd = nil, nil
	}
}

// requestLocked sends req and returns tmd's answer; an answer carrying an
// error is returned as an error. With redial, a broken connection is
// redialed once, the mirror pushed, and req retried.
func (c *Client) requestLocked(ctx context.Context, req Request, redial bool) (Response, error) {
	if c.closed {
		return Response{}, ErrClosed
	}
	deadline := func() time.Time {
		d := time.Now().Add(RequestTimeout)
		if dl, ok := ctx.Deadline(); ok && dl.Before(d) {
			d = dl
		}
		return d
	}
	var resp Response
	retried := false
	err := errors.New("tmd: not connected")
	if c.conn != nil {
		resp, err = roundTrip(c.conn, c.rd, req, deadline())
		if err != nil {
			c.dropLocked()
		}
	}
	if err != nil && redial {
		if err = c.connectLocked(ctx); err == nil {
			c.log.Warn("reconnected to tmd; pushing the SA database back", "socket", c.path)
			if err = c.pushLocked(ctx, deadline); err == nil {
				resp, err = roundTrip(c.conn, c.rd, req, deadline())
				retried = true
			}
			if err != nil {
				c.dropLocked()
			}
		}
	}
	if err != nil {
		return Response{}, err
	}
	if !resp.OK {
		return resp, &remoteError{op: req.Op, msg: resp.Error, retried: retried}
	}
	return resp, nil
}

// remoteError is a request tmd answered with an error; retried when the
// answer came after a redial (the first attempt may have been applied).
type remoteError struct {
	op, msg string
	retried bool
}

func (e *remoteError) Error() string { return "tmd refused " + e.op + ": " + e.msg }

// pushLocked installs the whole mirror into tmd (after a reconnect: tmd
// may have restarted with an empty database). SAs whose lifetime ended
// are expired from the mirror first (sadb.Memory.Expire, the rule tmd's
// Sweep applies).
func (c *Client) pushLocked(ctx context.Context, deadline func() time.Time) error {
	c.mirror.Expire(c.now())
	var reqs []Request
	for _, t := range c.mirror.TEKs() {
		reqs = append(reqs, Request{Op: OpInstallTEK, TEK: &t})
	}
	for _, k := range c.mirror.KEKs() {
		reqs = append(reqs, Request{Op: OpInstallKEK, KEK: &k})
	}
	for g, m := range c.fail {
		reqs = append(reqs, Request{Op: OpSetFailMode, Group: g, Mode: m.String()})
	}
	// Policies last: tmd installs each with the group's fail mode.
	for g, p := range c.mirror.Policies() {
		reqs = append(reqs, Request{Op: OpSetPolicy, Group: g, Policy: p})
	}
	for _, r := range reqs {
		resp, err := roundTrip(c.conn, c.rd, r, deadline())
		if err != nil {
			return err
		}
		if !resp.OK {
			c.log.Warn("tmd refused an SA of the pushed database", "op", r.Op, "err", resp.Error)
		}
	}
	return nil
}

// resyncLocked makes the mirror what tmd answered to list.
func (c *Client) resyncLocked(resp Response) {
	m := sadb.NewMemory()
	for _, t := range resp.TEKs {
		m.InstallTEK(t)
	}
	for _, k := range resp.KEKs {
		m.InstallKEK(k)
	}
	for g, p := range resp.Policies {
		if len(p) > 0 {
			m.SetPolicy(g, p)
		}
	}
	fail := map[string]sadb.FailMode{}
	for g, s := range resp.FailModes {
		if f, err := ParseFailMode(s); err == nil {
			fail[g] = f
			m.SetFailMode(g, f)
		}
	}
	c.mirror, c.fail = m, fail
}

// write sends a write request and applies it to the mirror: after tmd
// accepted it, or when tmd is unreachable (kept for the next push; the
// error is logged and returned). A request tmd refused changes the mirror
// only for deletes (the SA is gone from tmd either way).
func (c *Client) write(req Request, apply func(*sadb.Memory) error, isDelete bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.requestLocked(context.Background(), req, true)
	var re *remoteError
	switch {
	case err == nil:
		return apply(c.mirror)
	case errors.As(err, &re):
		if isDelete {
			apply(c.mirror)
			if re.retried {
				// The first attempt reached tmd but its answer was
				// lost: the SA is gone, which is what was asked.
				return nil
			}
		}
		return err
	case errors.Is(err, ErrClosed):
		return err
	default:
		if aerr := apply(c.mirror); aerr != nil {
			return aerr
		}
		c.log.Error("tmd unreachable; the SA change is kept locally and will be pushed on reconnect", "op", req.Op, "group", groupOf(req), "err", err.Error())
		return fmt.Errorf("%s kept locally, not in tmd: %w", req.Op, err)
	}
}

func groupOf(r Request) string {
	switch {
	case r.TEK != nil:
		return r.TEK.Group
	case r.KEK != nil:
		return r.KEK.Group
	}
	return r.Group
}

// InstallTEK installs t in tmd and the mirror.
func (c *Client) InstallTEK(t sadb.TEK) error {
	if t.SPI == 0 {
		return fmt.Errorf("sadb: TEK of group %s has SPI 0", t.Group)
	}
	return c.write(Request{Op: OpInstallTEK, TEK: &t}, func(m *sadb.Memory) error { return m.InstallTEK(t) }, false)
}

// DeleteTEK deletes a TEK from tmd and the mirror.
func (c *Client) DeleteTEK(group string, spi uint32) error {
	return c.write(Request{Op: OpDeleteTEK, Group: group, SPI: spi}, func(m *sadb.Memory) error { return m.DeleteTEK(group, spi) }, true)
}

// InstallKEK installs k in tmd and the mirror.
func (c *Client) InstallKEK(k sadb.KEK) error {
	return c.write(Request{Op: OpInstallKEK, KEK: &k}, func(m *sadb.Memory) error { return m.InstallKEK(k) }, false)
}

// DeleteKEK deletes the KEK of group from tmd and the mirror.
func (c *Client) DeleteKEK(group string) error {
	return c.write(Request{Op: OpDeleteKEK, Group: group}, func(m *sadb.Memory) error { return m.DeleteKEK(group) }, true)
}

// SetFailMode records the fail mode of group in tmd and the mirror (SPEC
// T3). The interface has no error: a failure is logged.
func (c *Client) SetFailMode(group string, f sadb.FailMode) {
	err := c.write(Request{Op: OpSetFailMode, Group: group, Mode: f.String()}, func(m *sadb.Memory) error {
		m.SetFailMode(group, f)
		c.fail[group] = f
		return nil
	}, false)
	if err != nil {
		c.log.Warn("fail mode not recorded in tmd", "group", group, "mode", f.String(), "err", err.Error())
	}
}

// SetPolicy installs the ordered policy of group in tmd and the mirror
// (nil or empty removes it); tmd hands it to its data plane with the
// group's fail mode. A reconnect after a tmd restart writes it back. The
// interface has no error: a failure is logged.
func (c *Client) SetPolicy(group string, p []sadb.PolicyEntry) {
	err := c.write(Request{Op: OpSetPolicy, Group: group, Policy: p}, func(m *sadb.Memory) error {
		if len(p) == 0 {
			p = nil
		}
		m.SetPolicy(group, p)
		return nil
	}, false)
	if err != nil {
		c.log.Warn("policy not recorded in tmd", "group", group, "entries", len(p), "err", err.Error())
	}
}

// Policy returns the policy of group as last known from tmd (the mirror,
// updated by every write and every Fetch).
func (c *Client) Policy(group string) []sadb.PolicyEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mirror.Policy(group)
}

// Policies returns every group's policy as last known from tmd; after a
// Fetch, what tmd holds.
func (c *Client) Policies() map[string][]sadb.PolicyEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mirror.Policies()
}

// TEKs returns the TEKs as last known from tmd: the mirror, updated by
// every write and every Fetch. The node calls it on every turn of its
// event loop, so it never waits on tmd; `show crypto ipsec sa` calls
// Fetch.
func (c *Client) TEKs() []sadb.TEK {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mirror.TEKs()
}

// Expire drops from the mirror the SAs whose lifetime ended at now
// (sadb.Memory.Expire) and returns them. It sends nothing: tmd's own Sweep
// expires them in tmd by the same rule, whether or not a client is
// connected, so the node only keeps its copy in step.
func (c *Client) Expire(now time.Time) ([]sadb.TEK, []sadb.KEK, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mirror.Expire(now)
}

// KEKs returns the KEKs as last known from tmd (see TEKs).
func (c *Client) KEKs() []sadb.KEK {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mirror.KEKs()
}

// FailMode returns the fail mode of group as last known from tmd.
func (c *Client) FailMode(group string) sadb.FailMode {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.fail[group]; ok {
		return f
	}
	return c.mirror.FailMode(group)
}

// Fetch asks tmd for its SA database now (what `show crypto ipsec sa`
// shows, SPEC D1), and makes the mirror what tmd holds: SAs tmd expired
// leave the mirror too. When tmd is unreachable it returns the error and
// the mirror.
func (c *Client) Fetch(ctx context.Context) ([]sadb.TEK, []sadb.KEK, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.mirror.TEKs(), c.mirror.KEKs(), ErrClosed
	}
	resp, err := c.requestLocked(ctx, Request{Op: OpList}, true)
	if err != nil {
		c.log.Warn("tmd unreachable; showing the local copy of the SA database", "err", err.Error())
		return c.mirror.TEKs(), c.mirror.KEKs(), err
	}
	c.resyncLocked(resp)
	return c.mirror.TEKs(), c.mirror.KEKs(), nil
}

// Where names the SA database for the show commands.
func (c *Client) Where() string { return "tmd at " + c.path }

// Status returns tmd's status (lssrc -l, show commands).
func (c *Client) Status(ctx context.Context) (Status, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	resp, err := c.requestLocked(ctx, Request{Op: OpStatus}, true)
	if err != nil {
		return Status{}, err
	}
	if resp.Status == nil {
		return Status{}, errors.New("tmd: status answer without status")
	}
	return *resp.Status, nil
}

// Counters returns each TEK's packet counters and the forwarding engine's
// (nil when tmd runs none), as tmd's data plane reports them now (`show
// crypto ipsec sa`).
func (c *Client) Counters(ctx context.Context) ([]TEKCounters, *DataPlaneCounters, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, ErrClosed
	}
	resp, err := c.requestLocked(ctx, Request{Op: OpCounters}, true)
	if err != nil {
		return nil, nil, err
	}
	return resp.SACounters, resp.DataPlane, nil
}

// Close closes the connection and ends the keepalive. tmd keeps the SAs;
// the mirror stays readable through TEKs and KEKs, and Fetch returns it
// with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed && c.stop != nil {
		close(c.stop)
	}
	c.closed = true
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn, c.rd = nil, nil
	return err
}
