package src

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// savedRun is one line of RUNDIR/srcmstr.state: a subsystem srcmstr had
// running, for a restarted srcmstr to adopt.
type savedRun struct {
	Name    string    `json:"name"`
	PID     int       `json:"pid"`
	Mode    string    `json:"mode"`
	Argv    []string  `json:"argv"`
	Started time.Time `json:"started"`
}

// save writes the running subsystems to srcmstr.state; runs on the owner
// goroutine. A failure is logged: supervising matters more than the file.
func (s *Server) save(t map[string]*entry) {
	var runs []savedRun
	for _, sub := range s.opt.Config.Subsystems {
		e := t[sub.Name]
		if e.run != nil && (e.state == Active || e.state == Starting) {
			runs = append(runs, savedRun{Name: sub.Name, PID: e.run.pid, Mode: e.run.mode, Argv: e.run.argv, Started: e.run.started})
		}
	}
	b, err := json.MarshalIndent(runs, "", "  ")
	if err != nil {
		s.opt.Logger.Warn("state", "err", err)
		return
	}
	path := StatePath(s.opt.Rundir)
	if err := os.WriteFile(path+".tmp", b, 0o644); err == nil {
		err = os.Rename(path+".tmp", path)
	}
	if err != nil {
		s.opt.Logger.Warn("state", "err", fmt.Errorf("save %s: %w", path, err))
	}
}

// adopt reads srcmstr.state and takes back the subsystems still running
// with the same command line (/proc/PID/cmdline). They lost the notify
// pipe, so a refresh cannot wait for their outcome. Runs before loop.
func (s *Server) adopt(t map[string]*entry) {
	b, err := os.ReadFile(StatePath(s.opt.Rundir))
	if err != nil {
		return
	}
	var runs []savedRun
	if err := json.Unmarshal(b, &runs); err != nil {
		s.opt.Logger.Warn("state: ignored", "err", err)
		return
	}
	for _, sr := range runs {
		e := t[sr.Name]
		if e == nil || e.sub.NotInstalled || sr.PID <= 0 || len(sr.Argv) == 0 {
			continue
		}
		cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", sr.PID))
		if err != nil || !bytes.Equal(bytes.TrimRight(cl, "\x00"), []byte(strings.Join(sr.Argv, "\x00"))) {
			continue
		}
		r := &run{pid: sr.PID, mode: sr.Mode, argv: sr.Argv, started: sr.Started, done: make(chan struct{}), adopted: true}
		e.state, e.run = Active, r
		s.opt.Logger.Info("adopted", "subsystem", sr.Name, "pid", sr.PID, "mode", sr.Mode)
		go s.watchAdopted(e.sub, r)
	}
}

// watchAdopted notices the exit of a process that is not srcmstr's child.
func (s *Server) watchAdopted(sub *Subsystem, r *run) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-tick.C:
		}
		if err := syscall.Kill(r.pid, 0); err == syscall.ESRCH || isZombie(r.pid) {
			s.exited(sub, r, "exited (adopted process: exit status unknown)")
			return
		}
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] == 'Z'
}
