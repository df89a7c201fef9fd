package src

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/groupvpn/groupvpn/internal/rundir"
	"github.com/groupvpn/groupvpn/internal/srcnotify"
)

// Subsystem states (SPEC D1: lssrc shows active / inoperative / stopped).
const (
	Stopped      = "stopped"
	Starting     = "starting"
	Active       = "active"
	Stopping     = "stopping"
	Inoperative  = "inoperative"
	NotInstalled = "not installed"
)

// exited is the pseudo-event the owner broadcasts to waiters when the
// process of a run ends; Detail is its exit status.
const exited = "exited"

// Options configure a Server.
type Options struct {
	// Rundir holds srcmstr.sock, srcmstr.state and NAME.log.
	Rundir string
	// Config is the subsystem table.
	Config *Config
	// Self replaces the command word "groupvpn"; default os.Executable().
	Self string
	// ReadyTimeout bounds startsrc's wait for "ready" (default 20 s),
	// RefreshTimeout refresh's wait for its outcome (20 s), StopTimeout
	// the wait between SIGTERM and SIGKILL (10 s).
	ReadyTimeout, RefreshTimeout, StopTimeout time.Duration
	// Env is added to the environment of every subsystem.
	Env []string
	// Logger receives srcmstr's own messages; default discards.
	Logger *slog.Logger
	// MaxConns bounds the connections served at once (default 32); one
	// more is answered "srcmstr: too many connections" and closed.
	// IOTimeout bounds reading a request from a new connection and
	// writing its answer (default 10 s); a request is at most MaxRequest
	// bytes.
	MaxConns  int
	IOTimeout time.Duration
}

// MaxRequest bounds a request to srcmstr.
const MaxRequest = 64 << 10

// run is one process of a subsystem, from start to exit.
type run struct {
	pid     int
	mode    string // "s" or "g"
	argv    []string
	started time.Time
	done    chan struct{} // closed when the process has exited
	adopted bool          // found running when srcmstr started: no notify pipe
}

// entry is the controller's record of one subsystem. Only the owner
// goroutine touches it.
type entry struct {
	sub     *Subsystem
	state   string
	run     *run
	waiters map[chan srcnotify.Event]bool

	readyAt      time.Time
	readyDetail  string
	refreshAt    time.Time
	refreshState string
	refreshDet   string
	addrs        []string

	exitStatus string
	exitAt     time.Time
	exitLog    []string
	exitMode   string
}

// Server is srcmstr. One goroutine (loop) owns the table of subsystems;
// every other goroutine reaches it through do.
type Server struct {
	opt  Options
	ln   net.Listener
	ops  chan func(map[string]*entry)
	quit chan struct{}
	wg   sync.WaitGroup
	// verbs serialises the verbs that change the table's processes, so a
	// group start is not interleaved with a stop; lssrc does not take it.
	verbs sync.Mutex
	once  sync.Once

	open    atomic.Int64
	dropped ConnDrops
}

// ConnDrops counts the connections srcmstr dropped since it started.
type ConnDrops struct {
	refused, bad atomic.Uint64
}

// Drops returns the connections refused over Options.MaxConns and those
// closed without an answer: a request that was not one, too long, or not
// sent within Options.IOTimeout.
func (s *Server) Drops() (refused, bad uint64) {
	return s.dropped.refused.Load(), s.dropped.bad.Load()
}

// SocketPath is where srcmstr listens in dir.
func SocketPath(dir string) string { return filepath.Join(dir, "srcmstr.sock") }

// StatePath is where srcmstr keeps its table across restarts.
func StatePath(dir string) string { return filepath.Join(dir, "srcmstr.state") }

// NewServer listens on RUNDIR/srcmstr.sock, refusing when another srcmstr
// answers there, and adopts the subsystems a previous srcmstr left running
// (RUNDIR/srcmstr.state). Serve then answers requests.
func NewServer(opt Options) (*Server, error) {
	if opt.Config == nil {
		return nil, errors.New("srcmstr: no subsystem table")
	}
	if opt.Rundir == "" {
		opt.Rundir = rundir.Dir()
	}
	if opt.Self == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("srcmstr: own executable: %w", err)
		}
		opt.Self = self
	}
	if opt.ReadyTimeout <= 0 {
		opt.ReadyTimeout = 20 * time.Second
	}
	if opt.RefreshTimeout <= 0 {
		opt.RefreshTimeout = 20 * time.Second
	}
	if opt.StopTimeout <= 0 {
		opt.StopTimeout = 10 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opt.MaxConns <= 0 {
		opt.MaxConns = 32
	}
	if opt.IOTimeout <= 0 {
		opt.IOTimeout = 10 * time.Second
	}
	if err := os.MkdirAll(opt.Rundir, 0o755); err != nil {
		return nil, fmt.Errorf("srcmstr: runtime directory: %w", err)
	}
	sock := SocketPath(opt.Rundir)
	// Whoever can connect can start and stop the IKE daemons: the owner
	// only (root, as for AIX's SRC).
	ln, err := rundir.Listen("unix", sock, 0o600)
	switch {
	case errors.Is(err, rundir.ErrInUse):
		return nil, fmt.Errorf("srcmstr: another srcmstr already answers on %s", sock)
	case err != nil:
		return nil, fmt.Errorf("srcmstr: %w", err)
	}
	s := &Server{opt: opt, ln: ln, ops: make(chan func(map[string]*entry)), quit: make(chan struct{})}
	table := map[string]*entry{}
	for _, sub := range opt.Config.Subsystems {
		e := &entry{sub: sub, state: Stopped, waiters: map[chan srcnotify.Event]bool{}}
		if sub.NotInstalled {
			e.state = NotInstalled
		}
		table[sub.Name] = e
	}
	s.adopt(table)
	s.wg.Add(1)
	go s.loop(table)
	return s, nil
}

// loop is the owner of the table.
func (s *Server) loop(table map[string]*entry) {
	defer s.wg.Done()
	for {
		select {
		case f := <-s.ops:
			f(table)
		case <-s.quit:
			return
		}
	}
}

// do runs f on the owner goroutine and waits for it; false when the
// server is closed. f must not block.
func (s *Server) do(f func(map[string]*entry)) bool {
	done := make(chan struct{})
	select {
	case s.ops <- func(t map[string]*entry) { f(t); close(done) }:
		<-done
		return true
	case <-s.quit:
		return false
	}
}

// Serve answers requests until Close.
func (s *Server) Serve() error {
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.quit:
				return nil
			default:
			}
			// Out of descriptors or buffers: wait it out rather than stop
			// answering the verbs for good.
			if rundir.RetryAccept(s.quit, err, &delay) {
				if rundir.FirstRetry(delay) {
					s.opt.Logger.Warn("srcmstr: accept failed; retrying", "err", err)
				}
				continue
			}
			select {
			case <-s.quit:
				return nil
			default:
			}
			return fmt.Errorf("srcmstr: accept: %w", err)
		}
		delay = 0
		if s.open.Add(1) > int64(s.opt.MaxConns) {
			s.open.Add(-1)
			if n := s.dropped.refused.Add(1); n&(n-1) == 0 { // log the 1st, 2nd, 4th, 8th...
				s.opt.Logger.Warn("srcmstr: connection refused: too many connections", "limit", s.opt.MaxConns, "refused_total", n)
			}
			c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			json.NewEncoder(c).Encode(Response{Stderr: fmt.Sprintf("srcmstr: too many connections (limit %d); try again\n", s.opt.MaxConns), Exit: 1})
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.open.Add(-1)
			defer c.Close()
			var req Request
			c.SetReadDeadline(time.Now().Add(s.opt.IOTimeout))
			lr := &io.LimitedReader{R: c, N: MaxRequest}
			if err := json.NewDecoder(lr).Decode(&req); err != nil {
				s.dropped.bad.Add(1)
				if lr.N == 0 {
					err = fmt.Errorf("request longer than %d bytes", MaxRequest)
				}
				c.SetWriteDeadline(time.Now().Add(s.opt.IOTimeout))
				json.NewEncoder(c).Encode(Response{Stderr: fmt.Sprintf("srcmstr: bad request: %v\n", err), Exit: 2})
				return
			}
			resp := s.Handle(req)
			c.SetWriteDeadline(time.Now().Add(s.opt.IOTimeout))
			json.NewEncoder(c).Encode(resp)
		}()
	}
}

// Close stops answering. The subsystems keep running (as under AIX when
// srcmstr goes away); a new srcmstr adopts them from srcmstr.state. With
// stopAll the running subsystems are stopped first (tests).
func (s *Server) Close(stopAll bool) error {
	if stopAll {
		s.verbs.Lock()
		var rs []*run
		s.do(func(t map[string]*entry) {
			for _, e := range t {
				if e.run != nil && (e.state == Active || e.state == Starting || e.state == Stopping) {
					e.state = Stopping
					rs = append(rs, e.run)
				}
			}
		})
		for _, r := range rs {
			s.terminate(r)
		}
		s.verbs.Unlock()
	}
	var err error
	s.once.Do(func() {
		close(s.quit)
		err = s.ln.Close()
	})
	s.wg.Wait()
	return err
}

// Handle answers one request; it is what the socket serves.
func (s *Server) Handle(req Request) Response {
	var out, errb bytes.Buffer
	var code int
	switch req.Verb {
	case VerbLssrc:
		code = s.lssrc(req, &out, &errb)
	case VerbStart, VerbStop, VerbRefresh:
		s.verbs.Lock()
		defer s.verbs.Unlock()
		switch req.Verb {
		case VerbStart:
			code = s.startsrc(req, &out, &errb)
		case VerbStop:
			code = s.stopsrc(req, &out, &errb)
		default:
			code = s.refresh(req, &out, &errb)
		}
	default:
		fmt.Fprintf(&errb, "srcmstr: unknown verb %q\n", req.Verb)
		code = 2
	}
	return Response{Stdout: out.String(), Stderr: errb.String(), Exit: code}
}

// target resolves the -s / -g / -a of a request; the message is the
// refusal to print.
func (s *Server) target(verb string, req Request) (subs []*Subsystem, msg string) {
	n := 0
	for _, b := range []bool{req.Subsystem != "", req.Group != "", req.All} {
		if b {
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Sprintf("%s: give exactly one of -s NAME, -g GROUP or -a", verb)
	}
	switch {
	case req.All:
		if verb != VerbLssrc {
			return nil, fmt.Sprintf("%s: -a is only for lssrc", verb)
		}
		return s.opt.Config.Subsystems, ""
	case req.Subsystem != "":
		sub := s.opt.Config.Lookup(req.Subsystem)
		if sub == nil {
			return nil, fmt.Sprintf("%s: unknown subsystem %s (not in %s)", verb, req.Subsystem, s.opt.Config.File)
		}
		return []*Subsystem{sub}, ""
	default:
		m := s.opt.Config.Members(req.Group)
		if len(m) == 0 {
			return nil, fmt.Sprintf("%s: unknown group %s (no subsystem of %s is in it)", verb, req.Group, s.opt.Config.File)
		}
		return m, ""
	}
}

func modeFlag(mode string) string {
	if mode == "" {
		return ""
	}
	return "-" + mode
}

// startsrc implements startsrc -s NAME and -g GROUP (SPEC D1, D2, D6).
func (s *Server) startsrc(req Request, out, errw io.Writer) int {
	subs, msg := s.target(VerbStart, req)
	if msg != "" {
		fmt.Fprintln(errw, msg)
		return 1
	}
	if req.Subsystem != "" {
		return s.startOne(subs[0], out, errw)
	}
	return s.startGroup(req.Group, subs, out, errw)
}

func (s *Server) startOne(sub *Subsystem, out, errw io.Writer) int {
	var refusal, mode, prev string
	s.do(func(t map[string]*entry) {
		e := t[sub.Name]
		switch {
		case sub.NotInstalled:
			refusal = fmt.Sprintf("startsrc: %s is not installed (%s:%d)", sub.Name, s.opt.Config.File, sub.Line)
			return
		case sub.GroupOnly:
			refusal = fmt.Sprintf("startsrc: %s runs only with its group: startsrc -g %s", sub.Name, sub.Group)
			return
		case e.state == Active || e.state == Starting:
			refusal = fmt.Sprintf("startsrc: %s is already %s (pid %d)", sub.Name, e.state, e.run.pid)
			return
		case e.state == Stopping:
			refusal = fmt.Sprintf("startsrc: %s is stopping (pid %d); try again when lssrc -s %s shows it stopped", sub.Name, e.run.pid, sub.Name)
			return
		}
		for _, r := range sub.Requires {
			if t[r].state != Active {
				refusal = fmt.Sprintf("startsrc: %s needs %s, which is not active: start %s first (startsrc -s %s)", sub.Name, r, r, r)
				return
			}
		}
		mode = "s"
		if sub.Group != "" {
			for _, m := range s.opt.Config.Members(sub.Group) {
				if o := t[m.Name]; m != sub && o.state == Active && o.run.mode == "g" {
					mode = "g"
				}
			}
		}
		if e.state == Inoperative {
			prev = fmt.Sprintf("%s was inoperative: %s at %s", sub.Name, e.exitStatus, e.exitAt.Format(time.RFC3339))
		}
	})
	if refusal != "" {
		fmt.Fprintln(errw, refusal)
		return 1
	}
	if prev != "" {
		fmt.Fprintln(out, prev)
	}
	if mode == "g" {
		fmt.Fprintf(out, "%s joins the running group %s: started as with startsrc -g %s (refresh it with refresh -g %s)\n", sub.Name, sub.Group, sub.Group, sub.Group)
	}
	line, err := s.launch(sub, mode)
	if err != nil {
		fmt.Fprintln(errw, err)
		return 1
	}
	fmt.Fprintln(out, line)
	return 0
}

func (s *Server) startGroup(group string, subs []*Subsystem, out, errw io.Writer) int {
	var refusal string
	type step struct {
		sub  *Subsystem
		keep int    // pid of a member kept
		prev string // inoperative note
	}
	var steps []step
	s.do(func(t map[string]*entry) {
		for _, sub := range subs {
			e := t[sub.Name]
			st := step{sub: sub}
			switch e.state {
			case Active, Starting:
				if e.run.mode == "s" {
					refusal = fmt.Sprintf("startsrc: %s is active, started with startsrc -s %s; stop it first (stopsrc -s %s) or keep starting subsystems one by one with startsrc -s", sub.Name, sub.Name, sub.Name)
					return
				}
				st.keep = e.run.pid
			case Stopping:
				refusal = fmt.Sprintf("startsrc: %s is stopping (pid %d); try again when lssrc -g %s shows it stopped", sub.Name, e.run.pid, group)
				return
			case Inoperative:
				st.prev = fmt.Sprintf("%s was inoperative: %s at %s", sub.Name, e.exitStatus, e.exitAt.Format(time.RFC3339))
			}
			steps = append(steps, st)
		}
	})
	if refusal != "" {
		fmt.Fprintln(errw, refusal)
		return 1
	}
	for _, st := range steps {
		switch {
		case st.sub.NotInstalled:
			fmt.Fprintf(out, "%s: not installed; the group starts without it.\n", st.sub.Name)
			continue
		case st.keep != 0:
			fmt.Fprintf(out, "0513-029 The %s Subsystem is already active. Subsystem PID is %d; kept.\n", st.sub.Name, st.keep)
			continue
		case st.prev != "":
			fmt.Fprintln(out, st.prev)
		}
		line, err := s.launch(st.sub, "g")
		if err != nil {
			fmt.Fprintln(errw, err)
			fmt.Fprintf(errw, "startsrc: group %s stopped at %s; the members started before it keep running (lssrc -g %s)\n", group, st.sub.Name, group)
			return 1
		}
		fmt.Fprintln(out, line)
	}
	return 0
}

// launch starts sub's process in mode and waits until it reports ready,
// exits, or the ready timeout passes.
func (s *Server) launch(sub *Subsystem, mode string) (string, error) {
	argv := append([]string(nil), sub.Command...)
	if argv[0] == SelfCommand {
		argv[0] = s.opt.Self
	}
	if mode == "g" {
		argv = append(argv, sub.GroupArgs...)
	}
	logPath := filepath.Join(s.opt.Rundir, sub.Name+".log")
	var r *run
	var w chan srcnotify.Event
	startErr := errors.New("srcmstr is shutting down")
	s.do(func(t map[string]*entry) {
		e := t[sub.Name]
		r, startErr = s.spawn(sub, argv, mode, logPath)
		if startErr != nil {
			e.state = Stopped
			return
		}
		e.state, e.run = Starting, r
		e.readyAt, e.refreshAt, e.addrs = time.Time{}, time.Time{}, nil
		w = make(chan srcnotify.Event, 16)
		e.waiters[w] = true
		s.save(t)
	})
	if startErr != nil {
		return "", fmt.Errorf("startsrc: %s: %w", sub.Name, startErr)
	}
	defer s.do(func(t map[string]*entry) { delete(t[sub.Name].waiters, w) })
	timer := time.NewTimer(s.opt.ReadyTimeout)
	defer timer.Stop()
	for {
		select {
		case ev := <-w:
			switch ev.State {
			case srcnotify.Ready:
				return fmt.Sprintf("0513-059 The %s Subsystem has been started. Subsystem PID is %d.", sub.Name, r.pid), nil
			case exited:
				s.do(func(t map[string]*entry) {
					if e := t[sub.Name]; e.run == r {
						e.state = Stopped
						s.save(t)
					}
				})
				return "", fmt.Errorf("startsrc: %s exited before it was ready (%s); last lines of %s:\n%s",
					sub.Name, ev.Detail, logPath, indent(tailLines(logPath, 5)))
			}
		case <-timer.C:
			s.do(func(t map[string]*entry) { t[sub.Name].state = Stopping })
			s.terminate(r)
			return "", fmt.Errorf("startsrc: %s did not report ready within %v; it was stopped; last lines of %s:\n%s",
				sub.Name, s.opt.ReadyTimeout, logPath, indent(tailLines(logPath, 5)))
		}
	}
}

// spawn starts the process: output appended to its log, the notify pipe
// as fd 3, its own process group. Runs on the owner goroutine.
func (s *Server) spawn(sub *Subsystem, argv []string, mode, logPath string) (*run, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	defer logf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("notify pipe: %w", err)
	}
	fmt.Fprintf(logf, "--- %s srcmstr: starting %s (-%s): %s\n", time.Now().Format(time.RFC3339), sub.Name, mode, strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{pw}
	cmd.Env = append(os.Environ(), s.opt.Env...)
	cmd.Env = append(cmd.Env,
		srcnotify.EnvFD+"=3",
		srcnotify.EnvMode+"="+mode,
		rundir.Env+"="+s.opt.Rundir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	pw.Close()
	r := &run{pid: cmd.Process.Pid, mode: mode, argv: argv, started: time.Now(), done: make(chan struct{})}
	s.opt.Logger.Info("started", "subsystem", sub.Name, "pid", r.pid, "mode", mode)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer pr.Close()
		d := srcnotify.NewDecoder(pr)
		for {
			ev, err := d.Next()
			if err != nil && !errors.Is(err, srcnotify.ErrLine) {
				return // EOF (the daemon exited), closed, or the pipe failed
			}
			if err != nil {
				s.opt.Logger.Warn("notify pipe", "subsystem", sub.Name, "err", err)
				continue
			}
			s.do(func(t map[string]*entry) { s.event(t[sub.Name], r, ev) })
		}
	}()
	go func() {
		err := cmd.Wait()
		status := "exit status 0"
		if err != nil {
			status = err.Error()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				status = ee.ProcessState.String()
			}
		}
		// Let the events written before the exit arrive first; a child
		// that kept the pipe open must not hold the exit back for long.
		select {
		case <-readerDone:
		case <-time.After(time.Second):
		}
		s.exited(sub, r, status)
	}()
	return r, nil
}

// exited records the end of run r of sub.
func (s *Server) exited(sub *Subsystem, r *run, status string) {
	logPath := filepath.Join(s.opt.Rundir, sub.Name+".log")
	tail := tailLines(logPath, 5)
	s.do(func(t map[string]*entry) {
		e := t[sub.Name]
		if e.run == r {
			switch e.state {
			case Stopping:
				e.state = Stopped
			case Starting, Active:
				e.state = Inoperative
				e.exitStatus, e.exitAt, e.exitLog, e.exitMode = status, time.Now(), tail, r.mode
				s.opt.Logger.Warn("subsystem inoperative", "subsystem", sub.Name, "pid", r.pid, "status", status)
			}
			s.save(t)
		}
		s.broadcast(e, srcnotify.Event{State: exited, Detail: status})
	})
	close(r.done)
}

// event records an event of run r; runs on the owner goroutine.
func (s *Server) event(e *entry, r *run, ev srcnotify.Event) {
	if e.run != r {
		return
	}
	now := time.Now()
	switch ev.State {
	case srcnotify.Ready:
		if e.state == Starting {
			e.state = Active
		}
		e.readyAt, e.readyDetail, e.addrs = now, ev.Detail, ev.Addrs
	case srcnotify.Refreshed, srcnotify.RefreshFailed:
		e.refreshAt, e.refreshState, e.refreshDet = now, ev.State, ev.Detail
		if ev.Addrs != nil {
			e.addrs = ev.Addrs
		}
	}
	s.broadcast(e, ev)
}

func (s *Server) broadcast(e *entry, ev srcnotify.Event) {
	for w := range e.waiters {
		select {
		case w <- ev:
		default:
		}
	}
}

// terminate sends SIGTERM to the process group of r, waits StopTimeout,
// then SIGKILL; it returns when the process has exited.
func (s *Server) terminate(r *run) (killed bool) {
	syscall.Kill(-r.pid, syscall.SIGTERM)
	select {
	case <-r.done:
		return false
	case <-time.After(s.opt.StopTimeout):
	}
	syscall.Kill(-r.pid, syscall.SIGKILL)
	syscall.Kill(r.pid, syscall.SIGKILL)
	<-r.done
	return true
}

// stopsrc implements stopsrc -s NAME and -g GROUP (SPEC D1, D6).
func (s *Server) stopsrc(req Request, out, errw io.Writer) int {
	subs, msg := s.target(VerbStop, req)
	if msg != "" {
		fmt.Fprintln(errw, msg)
		return 1
	}
	// Reverse start order; check first so a refusal stops nothing.
	rev := make([]*Subsystem, 0, len(subs))
	for i := len(subs) - 1; i >= 0; i-- {
		rev = append(rev, subs[i])
	}
	inTarget := map[string]bool{}
	for _, sub := range subs {
		inTarget[sub.Name] = true
	}
	type step struct {
		sub   *Subsystem
		run   *run
		state string
		note  string
	}
	var steps []step
	var refusal string
	s.do(func(t map[string]*entry) {
		for _, sub := range rev {
			e := t[sub.Name]
			switch e.state {
			case Active, Starting, Stopping, Inoperative:
			default:
				continue
			}
			if e.state != Inoperative {
				for _, other := range s.opt.Config.Subsystems {
					o := t[other.Name]
					if inTarget[other.Name] || (o.state != Active && o.state != Starting) {
						continue
					}
					for _, r := range other.Requires {
						if r == sub.Name {
							refusal = fmt.Sprintf("stopsrc: %s is needed by %s (active): stop %s first (stopsrc -s %s) or the whole group (stopsrc -g %s)",
								sub.Name, other.Name, other.Name, other.Name, sub.Group)
							return
						}
					}
				}
			}
			st := step{sub: sub, run: e.run, state: e.state}
			if e.state == Inoperative {
				st.note = fmt.Sprintf("%s was inoperative (%s at %s); marked stopped: start it again with startsrc", sub.Name, e.exitStatus, e.exitAt.Format(time.RFC3339))
			}
			steps = append(steps, st)
		}
		if refusal != "" {
			return
		}
		for _, st := range steps {
			e := t[st.sub.Name]
			if e.state == Inoperative {
				e.state = Stopped
			} else {
				e.state = Stopping
			}
		}
		s.save(t)
	})
	if refusal != "" {
		fmt.Fprintln(errw, refusal)
		return 1
	}
	if len(steps) == 0 {
		what := "group " + req.Group
		if req.Subsystem != "" {
			what = req.Subsystem
		}
		fmt.Fprintf(errw, "stopsrc: %s is not active (stopped)\n", what)
		return 1
	}
	for _, st := range steps {
		fmt.Fprintf(out, "0513-044 The %s Subsystem was requested to stop.\n", st.sub.Name)
		if st.note != "" {
			fmt.Fprintln(out, st.note)
			continue
		}
		if s.terminate(st.run) {
			fmt.Fprintf(out, "%s did not stop within %v of SIGTERM; it was killed (SIGKILL).\n", st.sub.Name, s.opt.StopTimeout)
		}
	}
	return 0
}

// refresh implements refresh -s NAME and -g GROUP (SPEC D4, D5, D6; seed
// 000): SIGHUP, then the daemon's refreshed / refresh-failed event.
func (s *Server) refresh(req Request, out, errw io.Writer) int {
	subs, msg := s.target(VerbRefresh, req)
	if msg != "" {
		fmt.Fprintln(errw, msg)
		return 1
	}
	type step struct {
		sub *Subsystem
		run *run
	}
	var steps []step
	var refusal string
	var inop []string // group members not refreshed because inoperative (D6)
	s.do(func(t map[string]*entry) {
		if req.Subsystem != "" {
			sub := subs[0]
			e := t[sub.Name]
			switch {
			case e.state != Active:
				refusal = fmt.Sprintf("refresh: %s is not active (%s); refresh does not start it: startsrc -s %s", sub.Name, e.state, sub.Name)
				if sub.GroupOnly {
					refusal = fmt.Sprintf("refresh: %s is not active (%s); refresh does not start it: startsrc -g %s", sub.Name, e.state, sub.Group)
				}
			case e.run.mode == "g":
				refusal = fmt.Sprintf("refresh: %s was started with its group (startsrc -g %s): refresh it with refresh -g %s", sub.Name, sub.Group, sub.Group)
			default:
				steps = append(steps, step{sub: sub, run: e.run})
			}
			return
		}
		var byS []string
		for _, sub := range subs {
			e := t[sub.Name]
			if e.state == Inoperative {
				inop = append(inop, fmt.Sprintf("refresh: %s is inoperative (%s at %s): not refreshed; recover it with stopsrc -s %s, then startsrc -g %s",
					sub.Name, e.exitStatus, e.exitAt.Format(time.RFC3339), sub.Name, req.Group))
			}
			if e.state != Active {
				continue
			}
			if e.run.mode == "s" {
				byS = append(byS, sub.Name)
			}
			steps = append(steps, step{sub: sub, run: e.run})
		}
		switch {
		case len(steps) == 0:
			refusal = fmt.Sprintf("refresh: group %s is not active; refresh does not start it: startsrc -g %s", req.Group, req.Group)
		case len(byS) > 0:
			cmds := make([]string, len(byS))
			for i, n := range byS {
				cmds[i] = "refresh -s " + n
			}
			refusal = fmt.Sprintf("refresh: the subsystems of group %s were started one by one (startsrc -s): refresh each with %s", req.Group, strings.Join(cmds, ", "))
		}
		if refusal != "" {
			steps = nil
		}
	})
	if refusal != "" {
		fmt.Fprintln(errw, refusal)
		return 1
	}
	code := 0
	for _, st := range steps {
		if err := s.refreshOne(st.sub, st.run, out); err != nil {
			fmt.Fprintln(errw, err)
			code = 1
		}
	}
	for _, m := range inop {
		fmt.Fprintln(errw, m)
		code = 1
	}
	return code
}

// refreshOne sends SIGHUP to one daemon and waits for the outcome.
func (s *Server) refreshOne(sub *Subsystem, r *run, out io.Writer) error {
	w := make(chan srcnotify.Event, 16)
	var sigErr error
	s.do(func(t map[string]*entry) {
		e := t[sub.Name]
		if e.run != r || e.state != Active {
			sigErr = fmt.Errorf("refresh: %s is no longer active (%s)", sub.Name, e.state)
			return
		}
		if err := syscall.Kill(r.pid, syscall.SIGHUP); err != nil {
			sigErr = fmt.Errorf("refresh: %s (pid %d): SIGHUP: %w", sub.Name, r.pid, err)
			return
		}
		if !r.adopted {
			e.waiters[w] = true
		}
	})
	if sigErr != nil {
		return sigErr
	}
	if r.adopted {
		fmt.Fprintf(out, "0513-095 The request for subsystem refresh was sent to %s (pid %d). srcmstr was restarted since %s started, so it has no notify pipe and cannot wait for the outcome: see lssrc -l -s %s and %s.\n",
			sub.Name, r.pid, sub.Name, sub.Name, filepath.Join(s.opt.Rundir, sub.Name+".log"))
		return nil
	}
	defer s.do(func(t map[string]*entry) { delete(t[sub.Name].waiters, w) })
	timer := time.NewTimer(s.opt.RefreshTimeout)
	defer timer.Stop()
	for {
		select {
		case ev := <-w:
			switch ev.State {
			case srcnotify.Refreshed:
				fmt.Fprintf(out, "0513-095 The request for subsystem refresh was completed successfully: %s: %s\n", sub.Name, detail(ev.Detail))
				return nil
			case srcnotify.RefreshFailed:
				return fmt.Errorf("refresh: %s: refresh failed: %s", sub.Name, detail(ev.Detail))
			case exited:
				logPath := filepath.Join(s.opt.Rundir, sub.Name+".log")
				return fmt.Errorf("refresh: %s exited during the refresh (%s) and is inoperative; last lines of %s:\n%s\nrecover with stopsrc -s %s and startsrc",
					sub.Name, ev.Detail, logPath, indent(tailLines(logPath, 5)), sub.Name)
			}
		case <-timer.C:
			return fmt.Errorf("refresh: %s (pid %d) did not report the outcome of the refresh within %v; see lssrc -l -s %s",
				sub.Name, r.pid, s.opt.RefreshTimeout, sub.Name)
		}
	}
}

func detail(d string) string {
	if d == "" {
		return "(no detail)"
	}
	return d
}

func indent(lines []string) string {
	if len(lines) == 0 {
		return "  (empty)"
	}
	return "  " + strings.Join(lines, "\n  ")
}

// tailLines returns the last n lines of the file (its last 64 KiB).
func tailLines(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	const max = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		f.Seek(fi.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}
