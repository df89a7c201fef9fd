package ctl

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/groupvpn/groupvpn/internal/rundir"
)

// Handler runs one command. It may be called from several connections at
// once. A returned error becomes {"ok":false,"error":err.Error()} (with the
// reply's text, if any, shown before it); an error from Request.Ask or
// Request.Confirm becomes a prompt.
type Handler func(ctx context.Context, req *Request) (*Reply, error)

// Request is a matched command as a handler sees it.
type Request struct {
	Line    string            // the command as typed, without output filters
	Command string            // the pattern that matched
	Words   []string          // keywords in full, placeholders as typed
	Args    map[string]string // placeholder name -> value; keyword -> itself for every keyword present
	Params  []Param           // the placeholders in order
	Input   string            // the request's "input" text, if any
	// Answer is the latest answer to a prompt ("" before any); Answers are
	// all answers so far, in order. A handler asking a single question can
	// test len(req.Answers) and return &Reply{Prompt: ...}; Ask and Confirm
	// handle any number of questions.
	Answer  string
	Answers []string

	asked int
}

// Has reports whether the keyword or placeholder name was on the line
// (for optional parts such as `[now]` or `[group WORD]`).
func (r *Request) Has(name string) bool { _, ok := r.Args[name]; return ok }

// Ask returns the answer to the next question of this command. When the
// client has not answered it yet, it returns a *PromptError: return it from
// the handler unchanged. The server then asks the client, and runs the
// handler again, from the start, with the answers so far; so a handler must
// not change anything before its last question. The prompt may have several
// lines; the last is shown as the input prompt.
func (r *Request) Ask(prompt string) (string, error) {
	if r.asked < len(r.Answers) {
		a := r.Answers[r.asked]
		r.asked++
		return a, nil
	}
	return "", &PromptError{Prompt: prompt}
}

// Confirm asks a yes/no question (for example
// "Are you sure you want to proceed ? [yes/no]: ") and reports whether the
// answer was yes; any other answer but "no"/"n" asks again, like IOS.
func (r *Request) Confirm(prompt string) (bool, error) {
	q := prompt
	for {
		a, err := r.Ask(q)
		if err != nil {
			return false, err
		}
		switch strings.ToLower(strings.TrimSpace(a)) {
		case "yes", "y":
			return true, nil
		case "no", "n":
			return false, nil
		}
		q = "% Please answer 'yes' or 'no'.\n" + prompt
	}
}

// Reply is a handler's result. Text is what an operator reads (one line per
// '\n'); Data is the same information for `| json` and programs (nil if the
// command has none). Prompt asks the operator a question (see Request.Ask).
type Reply struct {
	Text   string
	Data   any
	Prompt string
	// Stream, when set, renders the text instead of Text: it writes the
	// output as it goes, and the server passes it line by line through
	// the output filters to the client (issue 18: a show over 100,000
	// members is never one string). A write error (the client went away,
	// or stopped the output) must end it: return the error.
	Stream func(w io.Writer) error
	// StreamJSON, when set, renders the command's data for `| json` (one
	// indented JSON document, as the server would indent Data), streamed
	// like Stream; such a reply usually has no Data.
	StreamJSON func(w io.Writer) error
}

type command struct {
	pattern  string
	help     string
	h        Handler
	variants [][]elem
	readOnly bool // HandleReadOnly: changes nothing
}

// Server dispatches control requests to handlers. Create it with NewServer,
// register commands with Handle, then Serve.
type Server struct {
	log *slog.Logger

	mu       sync.RWMutex
	cmds     []*command
	shapes   map[string]string // variantKey -> pattern
	kwHelp   map[string]string // keyword path -> help (HandleHelp)
	hostname string
	limits   Limits

	audit   AuditFunc // SetAudit
	stats   connCounters
	monitor Monitor // terminal monitor's log fan-out (monitor.go)
}

// Limits bound what the clients of the control socket can hold: a local
// process that connects and stays silent, or stops reading its replies,
// costs a bounded number of goroutines and buffers for a bounded time.
// A zero field takes its default.
type Limits struct {
	// MaxConns is the number of connections served at once. A connection
	// beyond it is answered with one error line (id 0) and closed, and
	// counted (ConnStats.Refused). Default DefaultMaxConns.
	MaxConns int
	// IdleTimeout is how long the server waits for a complete request
	// line (from the end of the previous reply) before it closes the
	// connection (ConnStats.IdleClosed); a Client redials on its next
	// request. Default DefaultIdleTimeout, like IOS's exec-timeout.
	IdleTimeout time.Duration
	// WriteTimeout bounds writing one reply to a client that does not
	// read it; the connection is then closed (ConnStats.WriteTimeouts).
	// Default DefaultWriteTimeout.
	WriteTimeout time.Duration
	// StreamTimeout bounds the wait for a client to take the next chunk
	// of a streamed reply (an operator reading a page at --More--);
	// the reply is then abandoned and the connection closed
	// (ConnStats.WriteTimeouts). Default DefaultStreamTimeout.
	StreamTimeout time.Duration
}

// Defaults of Limits.
const (
	DefaultMaxConns     = 64
	DefaultIdleTimeout  = 10 * time.Minute
	DefaultWriteTimeout = 10 * time.Second
	// DefaultStreamTimeout: an operator may leave a page of output on
	// the screen this long.
	DefaultStreamTimeout = 5 * time.Minute
)

func (l Limits) withDefaults() Limits {
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultMaxConns
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = DefaultWriteTimeout
	}
	if l.StreamTimeout <= 0 {
		l.StreamTimeout = DefaultStreamTimeout
	}
	return l
}

// ConnStats counts the control socket's connections and what the limits
// dropped since the server started.
type ConnStats struct {
	Open          int    `json:"open"`           // connections being served now
	Accepted      uint64 `json:"accepted"`       // connections served
	Refused       uint64 `json:"refused"`        // refused over Limits.MaxConns
	IdleClosed    uint64 `json:"idle_closed"`    // closed after Limits.IdleTimeout without a request
	WriteTimeouts uint64 `json:"write_timeouts"` // closed because a reply could not be written in time
	Oversize      uint64 `json:"oversize"`       // request lines over MaxRequest, discarded
	BadRequests   uint64 `json:"bad_requests"`   // request lines that are not a JSON request
	// MonitorDropped are log lines terminal monitor sessions missed
	// (their queue full or over the rate; monitor.go).
	MonitorDropped uint64 `json:"monitor_dropped"`
}

type connCounters struct {
	open                                  atomic.Int64
	accepted, refused, idle, writeTO, big atomic.Uint64
	bad                                   atomic.Uint64
	lastRefusalLog                        atomic.Int64 // unix nanoseconds
}

// NewServer returns a server with no commands and the default Limits;
// logger nil discards.
func NewServer(logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{log: logger, shapes: map[string]string{}, limits: Limits{}.withDefaults()}
}

// SetLimits replaces the connection limits (zero fields take their
// defaults). Call it before Serve; connections already open keep the
// timeouts they started with until their next request.
func (s *Server) SetLimits(l Limits) {
	s.mu.Lock()
	s.limits = l.withDefaults()
	s.mu.Unlock()
}

func (s *Server) currentLimits() Limits {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.limits
}

// Stats returns the connection counters.
func (s *Server) Stats() ConnStats {
	c := &s.stats
	return ConnStats{
		Open:          int(c.open.Load()),
		Accepted:      c.accepted.Load(),
		Refused:       c.refused.Load(),
		IdleClosed:    c.idle.Load(),
		WriteTimeouts: c.writeTO.Load(),
		Oversize:      c.big.Load(),
		BadRequests:   c.bad.Load(),

		MonitorDropped: s.monitor.Dropped(),
	}
}

// SetHostname sets what ?hostname answers (the CLI prompt). Without it the
// server answers with its "show hostname" command if registered, else the
// system host name.
func (s *Server) SetHostname(name string) {
	s.mu.Lock()
	s.hostname = name
	s.mu.Unlock()
}

// Handle registers a command. The pattern language is described in the
// package comment. Handle panics on a malformed pattern or one that has a
// variant of the same shape as an already registered command, like
// http.ServeMux: both are programming errors found at start-up.
func (s *Server) Handle(pattern, help string, h Handler) {
	s.handle(pattern, help, h, false)
}

func (s *Server) handle(pattern, help string, h Handler, readOnly bool) {
	if h == nil {
		panic("ctl: Handle " + pattern + ": nil handler")
	}
	variants, err := compilePattern(pattern)
	if err != nil {
		panic(fmt.Sprintf("ctl: Handle %q: %v", pattern, err))
	}
	pattern = strings.Join(strings.Fields(pattern), " ")
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range variants {
		if old, ok := s.shapes[variantKey(v)]; ok {
			panic(fmt.Sprintf("ctl: Handle %q: conflicts with %q", pattern, old))
		}
	}
	for _, v := range variants {
		s.shapes[variantKey(v)] = pattern
	}
	s.cmds = append(s.cmds, &command{pattern: pattern, help: help, h: h, variants: variants, readOnly: readOnly})
}

// HandleHelp sets the help `?` shows for a keyword that several commands
// share ("show crypto" -> "Encryption module"); path is the keywords in
// full. Without it such a keyword's help is the help of the command it
// ends, else the words that may follow it.
func (s *Server) HandleHelp(path, help string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kwHelp == nil {
		s.kwHelp = map[string]string{}
	}
	s.kwHelp[strings.Join(strings.Fields(path), " ")] = help
}

func (s *Server) keywordHelp() map[string]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.kwHelp
}

func (s *Server) commands() []*command {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cmds
}

// Session holds the state of one client conversation: the pending prompts
// and their continuation tokens. Each connection has one; in-process callers
// (tests, the lab) make their own with NewSession.
type Session struct {
	s       *Server
	mu      sync.Mutex
	pending map[string]pendingPrompt
	order   []string
}

type pendingPrompt struct {
	cmd     string
	answers []string
}

// maxPending bounds the prompts a session keeps waiting for an answer.
const maxPending = 16

// NewSession starts a conversation with the server.
func (s *Server) NewSession() *Session {
	return &Session{s: s, pending: map[string]pendingPrompt{}}
}

// Exec runs one command line in a fresh session (no prompts can be
// answered; use a Session for that).
func (s *Server) Exec(ctx context.Context, line string) *WireResponse {
	return s.NewSession().Do(ctx, &WireRequest{V: Version, Cmd: line})
}

func fail(req *WireRequest, msg string) *WireResponse {
	return &WireResponse{V: Version, ID: req.ID, Error: msg}
}

func failParse(req *WireRequest, err error) *WireResponse {
	r := fail(req, err.Error())
	var pe *parseError
	if errors.As(err, &pe) && pe.pos >= 0 {
		p := pe.pos
		r.Pos = &p
	}
	return r
}

// Do answers one request. Its text is collected into the response, up to
// MaxText: longer output is cut (Truncated, and an error saying so).
func (ss *Session) Do(ctx context.Context, req *WireRequest) *WireResponse {
	resp, _ := ss.do(ctx, req, nil)
	return resp
}

// Stream answers one request, writing its text to w as the command
// renders it (through the output filters); the response returned has no
// Text. A write error of w stops the command; it is returned as the
// error (with a response saying so).
func (ss *Session) Stream(ctx context.Context, req *WireRequest, w io.Writer) (*WireResponse, error) {
	resp, err := ss.do(ctx, req, func(b []byte) error { _, err := w.Write(b); return err })
	if err == nil && resp.Text != "" {
		_, err = io.WriteString(w, resp.Text)
	}
	resp.Text = ""
	return resp, err
}

// emitError is a failure to hand a chunk on (the client's, not the
// command's).
type emitError struct{ err error }

func (e *emitError) Error() string { return e.err.Error() }
func (e *emitError) Unwrap() error { return e.err }

// do answers one request. With emit, the output is handed on in chunks
// as it is produced and the response carries only the last one; the
// error is emit's, if it failed (the response then says so too).
func (ss *Session) do(ctx context.Context, req *WireRequest, emit func([]byte) error) (*WireResponse, error) {
	s := ss.s
	if req.V != Version {
		return fail(req, fmt.Sprintf("ctl: protocol version %d requested, but this server speaks version %d: use a groupvpn cli from the same release as the daemon", req.V, Version)), nil
	}
	switch req.Cmd {
	case CmdComplete:
		return s.complete(req), nil
	case CmdHelp:
		return s.help(req), nil
	case CmdHostname:
		return s.hostnameReply(ctx, req), nil
	case CmdMonitor:
		return fail(req, "ctl: ?monitor streams log lines on a connection of its own (first request); not here"), nil
	}
	if strings.HasPrefix(req.Cmd, "?") {
		return fail(req, fmt.Sprintf("ctl: unknown built-in request %q (built-ins: %s, %s, %s)", req.Cmd, CmdComplete, CmdHelp, CmdHostname)), nil
	}
	if strings.ContainsAny(req.Cmd, "\n\r") {
		return fail(req, "ctl: a command is one line"), nil
	}
	cmdPart, stages := splitFilters(req.Cmd)
	filters, err := parseFilters(stages)
	if err != nil {
		return failParse(req, err), nil
	}
	if strings.TrimSpace(cmdPart) == "" {
		if len(stages) > 0 {
			return failParse(req, &parseError{msgInvalid, len(cmdPart)}), nil
		}
		return &WireResponse{V: Version, ID: req.ID, OK: true}, nil
	}
	res, err := resolve(s.commands(), cmdPart)
	if err != nil {
		return failParse(req, err), nil
	}

	hreq := &Request{Line: strings.TrimSpace(cmdPart), Input: req.Input}
	res.bind(hreq)
	audit := s.auditFunc()
	auditLine := hreq.Line
	if strings.HasPrefix(hreq.Line, CmdConfigSession) && !hreq.Has("complete") {
		auditLine = strings.TrimSpace(req.Input) // the configuration line typed
	}
	auditLine = auditText(auditLine)
	if !res.cmd.readOnly {
		if p, ok := PeerFrom(ctx); ok && p.ReadOnly {
			if audit != nil {
				audit(ctx, p.User, auditLine, true)
			}
			return fail(req, errReadOnly(p)), nil
		}
	}
	if req.Token != "" {
		p, ok := ss.take(req.Token)
		if !ok {
			return fail(req, "ctl: unknown or already used answer token; run the command again"), nil
		}
		if p.cmd != req.Cmd {
			return fail(req, fmt.Sprintf("ctl: the answer token belongs to %q, not %q", p.cmd, req.Cmd)), nil
		}
		hreq.Answers = append(p.answers[:len(p.answers):len(p.answers)], req.Answer)
	} else if req.Answer != "" {
		hreq.Answers = []string{req.Answer}
	}
	if n := len(hreq.Answers); n > 0 {
		hreq.Answer = hreq.Answers[n-1]
	}

	reply, err := s.call(ctx, res.cmd, hreq)
	if reply == nil {
		reply = &Reply{}
	}
	var pe *PromptError
	prompted := errors.As(err, &pe) || (err == nil && reply.Prompt != "")
	if !res.cmd.readOnly && !prompted && audit != nil && auditLine != "" && !hreq.Has("complete") {
		audit(ctx, UserOf(ctx), auditLine, false)
	}
	if prompted {
		// With Ask/Confirm the handler stopped at the question: what it
		// returned besides is not output. Reply.Prompt shows Reply.Text
		// before the question.
		prompt, text := reply.Prompt, reply.Text
		if pe != nil {
			prompt, text = pe.Prompt, ""
		}
		tok := ss.put(pendingPrompt{cmd: req.Cmd, answers: hreq.Answers})
		return &WireResponse{V: Version, ID: req.ID, Text: text, Prompt: prompt, Token: tok,
			Error: (&PromptError{Prompt: prompt}).Error()}, nil
	}
	if err != nil {
		s.log.Debug("ctl: command failed", "cmd", hreq.Line, "err", err)
		r := &WireResponse{V: Version, ID: req.ID, Text: reply.Text, Error: err.Error()}
		var pe *parseError
		if errors.As(err, &pe) && pe.pos >= 0 { // a configuration line's (Grammar): pos is in the input
			p := pe.pos
			r.Pos = &p
		}
		return r, nil
	}
	var data json.RawMessage
	if reply.Data != nil {
		data, err = marshalData(reply.Data)
		if err != nil {
			s.log.Error("ctl: reply data not encodable", "cmd", res.cmd.pattern, "err", err)
			return fail(req, fmt.Sprintf("ctl: cannot encode the reply's data: %v", err)), nil
		}
	}
	src, err := outputSource(reply, data, filters)
	if err != nil {
		return fail(req, err.Error()), nil
	}
	c := &chunker{limit: MaxText}
	if emit != nil {
		c.emit = func(b []byte) error {
			if err := emit(b); err != nil {
				return &emitError{err}
			}
			return nil
		}
	}
	err = s.render(res.cmd, src, &lineWriter{next: pipeline(filters, c, src.dataFirst)})
	resp := &WireResponse{V: Version, ID: req.ID, OK: true, Text: string(c.buf), Data: data}
	var ee *emitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		resp.OK, resp.Text, resp.Error = false, "", "ctl: output abandoned: "+ee.err.Error()
		return resp, ee.err
	case errors.Is(err, errTooMuch):
		resp.OK, resp.Truncated, resp.Error = false, true, tooLongError(c.lines)
	default:
		resp.OK, resp.Error = false, err.Error()
	}
	return resp, nil
}

// render runs a reply's source into w, turning a renderer's panic into an
// error.
func (s *Server) render(c *command, src outSource, w *lineWriter) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("ctl: renderer panicked", "cmd", c.pattern, "panic", p)
			err = fmt.Errorf("%% Internal error in %q: %v", c.pattern, p)
		}
	}()
	return src.run(w)
}

// marshalData is a reply's Data as JSON, '<', '>' and '&' as themselves
// (not \u003c...): log lines and configurations read as typed.
func marshalData(v any) (json.RawMessage, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// call runs a handler, turning a panic into an error.
func (s *Server) call(ctx context.Context, c *command, req *Request) (reply *Reply, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("ctl: handler panicked", "cmd", c.pattern, "panic", p)
			reply, err = nil, fmt.Errorf("%% Internal error in %q: %v", c.pattern, p)
		}
	}()
	return c.h(ctx, req)
}

func (ss *Session) put(p pendingPrompt) string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for len(ss.order) >= maxPending {
		delete(ss.pending, ss.order[0])
		ss.order = ss.order[1:]
	}
	tok := rand.Text()
	ss.pending[tok] = p
	ss.order = append(ss.order, tok)
	return tok
}

func (ss *Session) take(tok string) (pendingPrompt, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	p, ok := ss.pending[tok]
	if ok {
		delete(ss.pending, tok)
		for i, t := range ss.order {
			if t == tok {
				ss.order = append(ss.order[:i:i], ss.order[i+1:]...)
				break
			}
		}
	}
	return p, ok
}

func (s *Server) complete(req *WireRequest) *WireResponse {
	var comp Completion
	cmdPart, stages := splitFilters(req.Line)
	if len(stages) > 0 {
		if _, err := resolve(s.commands(), cmdPart); err != nil {
			comp.Error = err.Error()
		} else if _, err := parseFilters(stages[:len(stages)-1]); err != nil {
			comp.Error = err.Error()
		} else {
			comp.Candidates, comp.Partial = completeFilter(stages[len(stages)-1])
		}
	} else {
		cands, partial, err := completeCommand(s.commands(), s.keywordHelp(), req.Line)
		comp.Candidates, comp.Partial = cands, partial
		if err != nil {
			comp.Error = err.Error()
		}
	}
	if comp.Candidates == nil {
		comp.Candidates = []Candidate{}
	}
	var text string
	switch {
	case comp.Error != "":
		text = comp.Error + "\n"
	case len(comp.Candidates) == 0:
		text = "% Unrecognized command\n"
	default:
		var b bytes.Buffer
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for _, c := range comp.Candidates {
			fmt.Fprintf(tw, "  %s\t%s\n", c.Word, c.Help)
		}
		tw.Flush()
		text = b.String()
	}
	data, _ := json.Marshal(comp)
	return &WireResponse{V: Version, ID: req.ID, OK: true, Text: text, Data: data}
}

func (s *Server) help(req *WireRequest) *WireResponse {
	cmds := s.commands()
	entries := make([]HelpEntry, 0, len(cmds))
	for _, c := range cmds {
		if strings.HasPrefix(c.help, protocolHelp) {
			continue
		}
		entries = append(entries, HelpEntry{c.pattern, c.help})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Command < entries[j].Command })
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, e := range entries {
		fmt.Fprintf(tw, "  %s\t%s\n", e.Command, e.Help)
	}
	tw.Flush()
	data, _ := json.Marshal(entries)
	return &WireResponse{V: Version, ID: req.ID, OK: true, Text: b.String(), Data: data}
}

func (s *Server) hostnameReply(ctx context.Context, req *WireRequest) *WireResponse {
	s.mu.RLock()
	name := s.hostname
	s.mu.RUnlock()
	if name == "" {
		for _, c := range s.commands() {
			if c.pattern == "show hostname" {
				r, err := s.call(ctx, c, &Request{Line: c.pattern, Command: c.pattern, Words: []string{"show", "hostname"}, Args: map[string]string{"show": "show", "hostname": "hostname"}})
				if err == nil && r != nil {
					name = strings.TrimSpace(r.Text)
				}
			}
		}
	}
	if name == "" {
		name, _ = os.Hostname()
	}
	if name == "" {
		return fail(req, "ctl: no host name")
	}
	data, _ := json.Marshal(name)
	return &WireResponse{V: Version, ID: req.ID, OK: true, Text: name + "\n", Data: data}
}

// Serve listens on the unix socket path (mode 0600) and answers requests
// until ctx ends; it then closes the listener and every connection and
// returns nil. A socket file left by a dead process is removed; if another
// process is listening on path, Serve fails instead. The parent directory
// is created (mode 0750) if missing.
func (s *Server) Serve(ctx context.Context, path string) error {
	ln, err := listenUnix(path, 0o600, -1)
	if err != nil {
		return err
	}
	s.log.Info("ctl: control socket listening", "path", path)
	return s.ServeListener(ctx, ln)
}

// Listen binds the control socket at path (its directory is created; a
// stale socket file is replaced; a socket another process serves is
// refused). Serve it with ServeListener.
func Listen(path string) (net.Listener, error) { return listenUnix(path, 0o600, -1) }

func listenUnix(path string, mode os.FileMode, gid int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("ctl: control socket directory: %w", err)
	}
	// A socket for a group is bound 0600 and opened to the group once it
	// is the group's: bound at mode, the daemon's own primary group could
	// connect until the chown.
	bind := mode
	if gid >= 0 {
		bind = 0o600
	}
	ln, err := rundir.Listen("unix", path, bind)
	if err == nil && gid >= 0 {
		cerr := os.Chown(path, -1, gid)
		if cerr == nil {
			cerr = os.Chmod(path, mode)
		}
		if cerr != nil {
			ln.Close()
			return nil, fmt.Errorf("ctl: socket group of %s: %w", path, cerr)
		}
	}
	switch {
	case errors.Is(err, rundir.ErrInUse):
		return nil, fmt.Errorf("ctl: another process is serving the control socket %s (is the daemon already running?)", path)
	case err != nil:
		return nil, fmt.Errorf("ctl: %w", err)
	}
	return ln, nil
}

// ServeListener answers requests on connections from ln until ctx ends,
// within the server's Limits.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	stopped := make(chan struct{})
	go func() {
		<-ctx.Done()
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		close(stopped)
	}()
	var err error
	var delay time.Duration
	for {
		var c net.Conn
		c, err = ln.Accept()
		if err != nil {
			if rundir.RetryAccept(ctx.Done(), err, &delay) {
				if rundir.FirstRetry(delay) {
					s.log.Warn("ctl: accept failed; retrying", "err", err)
				}
				continue
			}
			break
		}
		delay = 0
		lim := s.currentLimits()
		mu.Lock()
		if ctx.Err() != nil {
			mu.Unlock()
			c.Close()
			break
		}
		if len(conns) >= lim.MaxConns {
			mu.Unlock()
			s.refuse(c, lim)
			continue
		}
		conns[c] = true
		s.stats.open.Add(1)
		mu.Unlock()
		s.stats.accepted.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c)
			mu.Lock()
			delete(conns, c)
			s.stats.open.Add(-1)
			mu.Unlock()
			c.Close()
		}()
	}
	if ctx.Err() == nil {
		cancel()
		<-stopped
		wg.Wait()
		return fmt.Errorf("ctl: accept: %w", err)
	}
	<-stopped
	wg.Wait()
	return nil
}

// refusalWrite bounds writing the refusal line to a connection over the cap.
const refusalWrite = 100 * time.Millisecond

// refuse answers a connection over Limits.MaxConns with one error line and
// closes it; it is counted, and logged at most once a minute.
func (s *Server) refuse(c net.Conn, lim Limits) {
	n := s.stats.refused.Add(1)
	now := time.Now().UnixNano()
	if last := s.stats.lastRefusalLog.Load(); now-last >= int64(time.Minute) && s.stats.lastRefusalLog.CompareAndSwap(last, now) {
		s.log.Warn("ctl: control connection refused: too many connections", "limit", lim.MaxConns, "refused_total", n)
	}
	b, _ := json.Marshal(fail(&WireRequest{}, fmt.Sprintf("ctl: too many control connections (limit %d); try again later", lim.MaxConns)))
	c.SetWriteDeadline(time.Now().Add(refusalWrite))
	c.Write(append(b, '\n'))
	c.Close()
}

// serveConn answers the requests of one connection in order. Each request
// line must arrive within IdleTimeout of the previous reply, and each reply
// must be written within WriteTimeout, or the connection is closed.
func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	lim := s.currentLimits()
	ss := s.NewSession()
	ctx = WithPeer(ctx, connPeer(c))
	rd := bufio.NewReaderSize(c, 4096)
	w := bufio.NewWriter(c)
	for {
		c.SetReadDeadline(time.Now().Add(lim.IdleTimeout))
		line, err := readLine(rd, MaxRequest)
		var resp *WireResponse
		switch {
		case errors.Is(err, errTooLong):
			s.stats.big.Add(1)
			resp = fail(&WireRequest{}, fmt.Sprintf("ctl: request line longer than %d bytes (limit 64 KiB); discarded", MaxRequest))
		case err != nil:
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				s.stats.idle.Add(1)
				s.log.Debug("ctl: idle control connection closed", "idle", lim.IdleTimeout)
			case !errors.Is(err, io.EOF) && ctx.Err() == nil:
				s.log.Debug("ctl: connection read", "err", err)
			}
			return
		default:
			if req, ok := monitorRequest(line); ok {
				s.streamMonitor(ctx, c, rd, w, req.ID, lim)
				return
			}
			var serr error
			resp, serr = ss.handleLine(ctx, line, func(id uint64, chunk []byte) error {
				c.SetWriteDeadline(time.Now().Add(lim.StreamTimeout))
				w.Write(encodeResponse(&WireResponse{V: Version, ID: id, OK: true, More: true, Text: string(chunk)}))
				return w.Flush()
			})
			if serr != nil {
				s.writeFailed(serr, lim.StreamTimeout)
				return
			}
			if resp == nil {
				continue
			}
		}
		c.SetWriteDeadline(time.Now().Add(lim.WriteTimeout))
		b := encodeResponse(resp)
		if len(b) > MaxResponse {
			// A client that does not stream takes one line of at most
			// MaxResponse: say so rather than send what it cannot read.
			b = encodeResponse(&WireResponse{V: Version, ID: resp.ID, Truncated: true, Error: tooLongError(strings.Count(resp.Text, "\n"))})
		}
		w.Write(b)
		if err := w.Flush(); err != nil {
			s.writeFailed(err, lim.WriteTimeout)
			return
		}
	}
}

// writeFailed counts and logs a reply the connection did not take.
func (s *Server) writeFailed(err error, timeout time.Duration) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		s.stats.writeTO.Add(1)
		s.log.Debug("ctl: control client does not read its replies; connection closed", "timeout", timeout)
	} else {
		s.log.Debug("ctl: connection write", "err", err)
	}
}

// monitorRequest reports whether line is a ?monitor request.
func monitorRequest(line []byte) (*WireRequest, bool) {
	if !bytes.Contains(line, []byte(CmdMonitor)) {
		return nil, false
	}
	var req WireRequest
	if json.Unmarshal(bytes.TrimSpace(line), &req) != nil || req.Cmd != CmdMonitor || req.V != Version {
		return nil, false
	}
	return &req, true
}

// handleLine answers one request line (without its limit check: the
// caller read at most MaxRequest bytes); nil for a blank line, which is
// not answered.
//
// A request with Stream set has its output handed to chunk as it is
// produced; chunk's error (the client's) is returned.
func (ss *Session) handleLine(ctx context.Context, line []byte, chunk func(id uint64, b []byte) error) (*WireResponse, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil, nil
	}
	var req WireRequest
	if err := json.Unmarshal(line, &req); err != nil {
		ss.s.stats.bad.Add(1)
		return fail(&req, fmt.Sprintf("ctl: bad request (not a JSON object): %v", err)), nil
	}
	if !req.Stream || chunk == nil {
		return ss.do(ctx, &req, nil)
	}
	return ss.do(ctx, &req, func(b []byte) error { return chunk(req.ID, b) })
}

// encodeResponse renders resp as one line, newline included.
func encodeResponse(resp *WireResponse) []byte {
	b, err := json.Marshal(resp)
	if err != nil {
		b, _ = json.Marshal(fail(&WireRequest{ID: resp.ID}, "ctl: cannot encode the response: "+err.Error()))
	}
	return append(b, '\n')
}

var errTooLong = errors.New("line too long")

// readLine reads one '\n'-terminated line of at most limit bytes (the
// newline included). A longer line is consumed to its end and reported as
// errTooLong, so the connection stays usable. A final line without a
// newline is returned with a nil error.
func readLine(rd *bufio.Reader, limit int) ([]byte, error) {
	var buf []byte
	tooLong := false
	for {
		chunk, err := rd.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(chunk) > limit {
				tooLong, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		switch {
		case err == nil:
			if tooLong {
				return nil, errTooLong
			}
			return buf, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(buf) > 0 && !tooLong:
			return buf, nil
		default:
			if tooLong && errors.Is(err, io.EOF) {
				return nil, errTooLong
			}
			return nil, err
		}
	}
}
