package ctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/groupvpn/groupvpn/internal/rundir"
)

// DefaultSocketPath is isakmpd's control socket.
const DefaultSocketPath = "/run/groupvpn/isakmpd.sock"

// DefaultSocket returns $GROUPVPN_SOCKET, else isakmpd.sock in the
// runtime directory ($GROUPVPN_RUNDIR, else DefaultSocketPath).
func DefaultSocket() string {
	if p := os.Getenv("GROUPVPN_SOCKET"); p != "" {
		return p
	}
	return rundir.Socket("isakmpd")
}

// ErrConnection marks errors of the connection itself (as opposed to a
// command's failure); the Client redials on its next request.
var ErrConnection = errors.New("control connection failed")

// Client is one connection to a control socket. It is not safe for
// concurrent use.
type Client struct {
	path string
	conn net.Conn
	rd   *bufio.Reader
	id   uint64
}

// Dial connects to the control socket at path. Its errors say what to do.
func Dial(path string) (*Client, error) {
	c := &Client{path: path}
	if err := c.dial(); err != nil {
		return nil, err
	}
	return c, nil
}

// Path returns the socket path.
func (c *Client) Path() string { return c.path }

func (c *Client) dial() error {
	conn, err := net.DialTimeout("unix", c.path, 5*time.Second)
	if err != nil {
		return dialError(c.path, err)
	}
	c.conn, c.rd = conn, bufio.NewReaderSize(conn, 64<<10)
	return nil
}

func dialError(path string, err error) error {
	const start = "is isakmpd running? start it with: groupvpn isakmpd -f FILE; for another daemon pass its socket with -s SOCKET or $GROUPVPN_SOCKET"
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("cannot reach the control socket %s: it does not exist (%s)", path, start)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot reach the control socket %s: nothing is listening on it (%s)", path, start)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("cannot reach the control socket %s: permission denied (run groupvpn cli as the daemon's user, e.g. with sudo, or, for show commands, as a member of the group isakmpd -socket-group names)", path)
	}
	return fmt.Errorf("cannot reach the control socket %s: %v (%s)", path, err, start)
}

// Close closes the connection.
func (c *Client) Close() error {
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	return err
}

// Do sends one request (filling in V and ID) and waits for its response.
// Errors wrap ErrConnection; the connection is then closed and the next Do
// dials again (a request is never sent twice). A streamed reply is
// collected into the response's Text up to MaxText; past it the rest is
// read and dropped, and the response is marked Truncated (with OK false
// and an error saying so): use Stream for output of any length.
func (c *Client) Do(ctx context.Context, req *WireRequest) (*WireResponse, error) {
	var col collector
	resp, err := c.roundTrip(ctx, req, &col)
	if err != nil {
		return nil, err
	}
	if col.b.Len() > 0 {
		col.WriteString(resp.Text)
		resp.Text = col.b.String()
	}
	if col.cut {
		resp.Truncated, resp.OK = true, false
		if resp.Error == "" {
			resp.Error = fmt.Sprintf("%% Output longer than %d MiB: cut (narrow it with a filter, or read it streamed)", MaxText>>20)
		}
	}
	return resp, nil
}

// Stream sends one request and writes its output text to w as it
// arrives, chunk by chunk (the response returned has no Text). When w
// fails (a pager's 'q' returns ErrStopped) the connection is closed, so
// the daemon stops rendering, and Stream returns ErrStopped; the next
// request dials again.
func (c *Client) Stream(ctx context.Context, req *WireRequest, w io.Writer) (*WireResponse, error) {
	resp, err := c.roundTrip(ctx, req, w)
	if err != nil {
		return nil, err
	}
	if resp.Text != "" {
		if _, err := io.WriteString(w, resp.Text); err != nil {
			return nil, ErrStopped
		}
		resp.Text = ""
	}
	return resp, nil
}

// collector keeps up to MaxText bytes and drops the rest.
type collector struct {
	b   strings.Builder
	cut bool
}

func (c *collector) Write(p []byte) (int, error) {
	if room := MaxText - c.b.Len(); len(p) > room {
		p, c.cut = p[:max(room, 0)], true
	}
	c.b.Write(p)
	return len(p), nil
}

func (c *collector) WriteString(s string) { c.Write([]byte(s)) }

func (c *Client) roundTrip(ctx context.Context, req *WireRequest, w io.Writer) (*WireResponse, error) {
	if c.conn != nil {
		if err := c.check(); err != nil {
			return nil, err
		}
	}
	if c.conn == nil {
		if err := c.dial(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConnection, err)
		}
	}
	c.id++
	req.V, req.ID, req.Stream = Version, c.id, true
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if len(b)+1 > MaxRequest {
		return nil, fmt.Errorf("request of %d bytes is longer than the control protocol's limit of %d bytes (64 KiB)", len(b)+1, MaxRequest)
	}
	conn := c.conn
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(append(b, '\n')); err != nil {
		if reason := c.refusal(); reason != "" {
			err = errors.New(reason)
		}
		return nil, c.broken("send", err)
	}
	resp, err := readReply(c.rd, req.ID, w)
	switch {
	case errors.Is(err, ErrStopped):
		c.Close()
		return nil, ErrStopped
	case err != nil:
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		var pe *protocolError
		if errors.As(err, &pe) {
			return nil, c.broken("protocol", err)
		}
		return nil, c.broken("receive", err)
	}
	return resp, nil
}

// protocolError is a reply that does not follow the protocol.
type protocolError struct{ err error }

func (e *protocolError) Error() string { return e.err.Error() }
func (e *protocolError) Unwrap() error { return e.err }

// readReply reads the reply to request id: any number of chunk lines
// ("more"), whose text goes to w, then the last line, returned. Each line
// is at most MaxResponse bytes. A failing w stops it with ErrStopped
// (the rest is not read). Every byte is the daemon's, and trusted no
// more than that: a line out of place is a protocol error.
func readReply(rd *bufio.Reader, id uint64, w io.Writer) (*WireResponse, error) {
	for {
		line, err := readLine(rd, MaxResponse)
		if err != nil {
			if errors.Is(err, errTooLong) {
				err = fmt.Errorf("response longer than %d bytes", MaxResponse)
			}
			return nil, err
		}
		var resp WireResponse
		if err := json.Unmarshal(line, &resp); err != nil {
			return nil, &protocolError{fmt.Errorf("decode: %w", err)}
		}
		if resp.V != Version {
			return nil, &protocolError{fmt.Errorf("the daemon speaks control protocol version %d, this client version %d: use a groupvpn cli from the same release as the daemon: %s", resp.V, Version, resp.Error)}
		}
		if resp.ID != id {
			if resp.ID == 0 && !resp.OK {
				return nil, &protocolError{errors.New(resp.Error)}
			}
			return nil, &protocolError{fmt.Errorf("response to request %d, expected %d", resp.ID, id)}
		}
		if !resp.More {
			return &resp, nil
		}
		if resp.Text != "" {
			if _, err := io.WriteString(w, resp.Text); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrStopped, err)
			}
		}
	}
}

// check looks, without blocking, at an idle connection before a request
// is sent on it. The server closes a connection idle for longer than its
// Limits.IdleTimeout: the connection is then dropped, and Do dials again
// (nothing was sent, so nothing is sent twice). A line the server sent
// unasked (a refusal) is returned as the error.
func (c *Client) check() error {
	// A deadline already past would not even try the read: give it 1 ms.
	c.conn.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, err := c.rd.Peek(1)
	c.conn.SetReadDeadline(time.Time{})
	var ne net.Error
	switch {
	case err == nil:
		reason := c.refusal()
		if reason == "" {
			reason = "the daemon sent a line nobody asked for"
		}
		return c.broken("receive", errors.New(reason))
	case errors.As(err, &ne) && ne.Timeout():
		return nil // alive and quiet
	default:
		c.Close() // closed by the server (idle): redial
		return nil
	}
}

// refusalWait bounds the wait for the line a server sends before closing a
// connection it refuses.
const refusalWait = 200 * time.Millisecond

// refusal reads the error line a server sent before closing the
// connection (too many connections); "" when there is none.
func (c *Client) refusal() string {
	c.conn.SetReadDeadline(time.Now().Add(refusalWait))
	line, err := readLine(c.rd, MaxResponse)
	if err != nil {
		return ""
	}
	var resp WireResponse
	if json.Unmarshal(line, &resp) != nil || resp.OK || resp.Error == "" {
		return ""
	}
	return resp.Error
}

func (c *Client) broken(what string, err error) error {
	c.Close()
	return fmt.Errorf("%w: %s %s: %w", ErrConnection, what, c.path, err)
}

// Run sends one command line.
func (c *Client) Run(ctx context.Context, line string) (*WireResponse, error) {
	return c.Do(ctx, &WireRequest{Cmd: line})
}

// Complete asks for the completions of line.
func (c *Client) Complete(ctx context.Context, line string) (*Completion, string, error) {
	resp, err := c.Do(ctx, &WireRequest{Cmd: CmdComplete, Line: line})
	if err != nil {
		return nil, "", err
	}
	if !resp.OK {
		return nil, "", errors.New(resp.Error)
	}
	var comp Completion
	if err := json.Unmarshal(resp.Data, &comp); err != nil {
		return nil, "", fmt.Errorf("completion data: %w", err)
	}
	return &comp, resp.Text, nil
}

// Hostname asks for the host name shown in the prompt.
func (c *Client) Hostname(ctx context.Context) (string, error) {
	resp, err := c.Do(ctx, &WireRequest{Cmd: CmdHostname})
	if err != nil {
		return "", err
	}
	if !resp.OK {
		return "", errors.New(resp.Error)
	}
	var name string
	if err := json.Unmarshal(resp.Data, &name); err != nil || name == "" {
		return "", fmt.Errorf("no host name")
	}
	return name, nil
}
