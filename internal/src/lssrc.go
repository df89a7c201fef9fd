package src

import (
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// lssrc implements lssrc -s NAME | -g GROUP | -a [-l] (SPEC D1, D6: an
// inoperative daemon is visible, with why it ended).
func (s *Server) lssrc(req Request, out, errw io.Writer) int {
	subs, msg := s.target(VerbLssrc, req)
	if msg != "" {
		fmt.Fprintln(errw, msg)
		return 1
	}
	var b strings.Builder
	row := func(name, group, pid, status, started string) {
		b.WriteString(strings.TrimRight(fmt.Sprintf(" %-17s%-17s%-13s%-16s%s", name, group, pid, status, started), " "))
		b.WriteByte('\n')
	}
	b.WriteString("Subsystem         Group            PID          Status          Started\n")
	s.do(func(t map[string]*entry) {
		for _, sub := range subs {
			e := t[sub.Name]
			pid, started := "", ""
			if e.run != nil && (e.state == Active || e.state == Starting || e.state == Stopping) {
				pid = strconv.Itoa(e.run.pid)
				started = modeFlag(e.run.mode)
			}
			if e.state == Inoperative {
				started = modeFlag(e.exitMode)
			}
			row(sub.Name, sub.Group, pid, e.state, started)
			if req.Long {
				s.long(&b, e)
			}
		}
	})
	if req.Long {
		s.counters(&b)
	}
	io.WriteString(out, b.String())
	return 0
}

// counters writes srcmstr's own drops after a long listing (SPEC S5):
// the connections to its socket it refused or closed without an answer.
func (s *Server) counters(b *strings.Builder) {
	refused, bad := s.Drops()
	b.WriteString("srcmstr counters (since start):\n")
	fmt.Fprintf(b, "  %-32s: %-10d %s\n", "connections_refused", refused, fmt.Sprintf("connections refused over the limit (%d)", s.opt.MaxConns))
	fmt.Fprintf(b, "  %-32s: %-10d %s\n", "requests_dropped", bad, "connections closed without an answer: not a request, too long, or not sent in time")
}

// long writes the lssrc -l details of e; runs on the owner goroutine.
func (s *Server) long(b *strings.Builder, e *entry) {
	kv := func(k, v string) { fmt.Fprintf(b, "  %-15s %s\n", k+":", v) }
	ts := func(t time.Time) string { return t.Format(time.RFC3339) }
	if e.sub.NotInstalled {
		kv("Definition", fmt.Sprintf("%s:%d (not-installed)", s.opt.Config.File, e.sub.Line))
		return
	}
	cmd := strings.Join(e.sub.Command, " ")
	if e.run != nil {
		cmd = strings.Join(e.run.argv, " ")
	}
	kv("Command", cmd)
	if len(e.sub.GroupArgs) > 0 {
		kv("Group args", strings.Join(e.sub.GroupArgs, " "))
	}
	if len(e.sub.Requires) > 0 {
		kv("Requires", strings.Join(e.sub.Requires, ", "))
	}
	kv("Log", filepath.Join(s.opt.Rundir, e.sub.Name+".log"))
	if e.run != nil && e.state != Stopped && e.state != Inoperative {
		how := "startsrc -s " + e.sub.Name
		if e.run.mode == "g" {
			how = "startsrc -g " + e.sub.Group
		}
		kv("Started at", ts(e.run.started)+" by "+how)
		if e.run.adopted {
			kv("Adopted", "running before this srcmstr started; no notify pipe (refresh cannot wait for the outcome)")
		}
	}
	if !e.readyAt.IsZero() {
		kv("Last ready", strings.TrimSpace(ts(e.readyAt)+" "+e.readyDetail))
	}
	if !e.refreshAt.IsZero() {
		kv("Last refresh", ts(e.refreshAt)+" "+e.refreshState+": "+detail(e.refreshDet))
	}
	if e.state == Active || e.state == Stopping {
		for _, a := range e.addrs {
			kv("Listening on", a)
		}
	}
	if e.state == Inoperative {
		kv("Exit", e.exitStatus+" at "+ts(e.exitAt))
		kv("Recover with", fmt.Sprintf("stopsrc -s %s, then startsrc", e.sub.Name))
		b.WriteString("  Last log lines:\n")
		for _, l := range e.exitLog {
			b.WriteString("    " + l + "\n")
		}
	}
}
