package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/groupvpn/groupvpn/internal/atomicfile"
	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/syslog"
)

// Configuration mode (SPEC O2, P1): `configure terminal` edits a candidate
// of the running configuration (policy.Editor); `end` commits it when it is
// a valid configuration: the daemon's configuration is swapped (Config
// returns the new one), `%SYS-5-CONFIG_I: Configured from console by
// console` is logged and the commit hook runs with the old and the new
// configuration. `write memory` saves the running configuration to its
// file.

// configMode is a daemon's configuration-mode state (Daemon.cm).
type configMode struct {
	log *slog.Logger

	mu   sync.Mutex // serializes commits (swap, log, hook) and saves
	hook func(old, new *policy.Config)
}

func (d *Daemon) configMode() *configMode { return d.cm }

// installConfigMode registers configure terminal, write memory and copy
// running-config startup-config on the daemon's control server.
func installConfigMode(d *Daemon, logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cm := &configMode{log: logger}
	d.cm = cm
	cm.hook = d.ApplyConfig // install the new policy on the KS and log POLICY_CHANGE (gdoi.go)
	d.Ctl.HandleConfigure(func(ctx context.Context) (ctl.ConfigSession, error) {
		return &configSession{d: d, ed: policy.NewEditor(d.Config())}, nil
	})
	save := func(ctx context.Context, _ *ctl.Request) (*ctl.Reply, error) {
		if err := d.WriteMemory(); err != nil {
			return nil, err
		}
		return &ctl.Reply{Text: "Building configuration...\n[OK]\n"}, nil
	}
	d.Ctl.Handle("write [memory]", "Save the running configuration to its file", save)
	d.Ctl.Handle("copy running-config startup-config", "Save the running configuration to its file", save)
}

// SetCommitHook sets the function run after each committed configuration
// change (configure terminal ... end, SetConfig), with the configuration
// before and after; nil removes it. The default is ApplyConfig (which logs
// POLICY_CHANGE). Commits are serialized: the hook runs for one change at a
// time, in order, and must not commit itself. It runs once the node runs
// the new configuration, Config returns it and CONFIG_I is logged; a
// configuration the node cannot take is refused before (apply.go) and
// never reaches the hook.
func (d *Daemon) SetCommitHook(f func(old, new *policy.Config)) {
	cm := d.configMode()
	cm.mu.Lock()
	cm.hook = f
	cm.mu.Unlock()
}

// SetConfig makes c the running configuration (a reload) if the running
// node can take it, and runs the commit hook. Otherwise it returns why
// (*NotAppliedError) and changes nothing: the running configuration stays
// exactly what runs.
func (d *Daemon) SetConfig(c *policy.Config) error {
	cm := d.configMode()
	cm.mu.Lock()
	defer cm.mu.Unlock()
	old, err := d.apply(c)
	if err != nil {
		return err
	}
	d.runHook(old, c)
	return nil
}

// Reload rereads the configuration file the running configuration was
// loaded from and applies it (SetConfig). An invalid file is refused with
// every file:line and reason, a file the running node cannot take with the
// reasons (*NotAppliedError); either way the running configuration stays.
// No input makes it panic.
func (d *Daemon) Reload() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error while reloading the configuration: %v (please report this)", r)
		}
	}()
	file := d.Config().File
	if file == "" {
		return errors.New("the running configuration was not loaded from a file: nothing to reload")
	}
	c, err := policy.LoadWith(file, d.Config().Options())
	if err != nil {
		return err
	}
	return d.SetConfig(c)
}

func (d *Daemon) swapConfig(c *policy.Config) *policy.Config {
	d.mu.Lock()
	old := d.config
	d.config = c
	watch := d.onHostname
	d.mu.Unlock()
	if c.Hostname != old.Hostname {
		d.Ctl.SetHostname(c.Hostname)
		for _, f := range watch {
			f(c.Hostname)
		}
	}
	return old
}

// commit ends a configuration session: the editor's candidate, rebased on
// the running configuration if another session committed meanwhile,
// becomes the running configuration if it is valid and the running node
// can take it (apply). Nothing changes on an error.
func (d *Daemon) commit(ctx context.Context, ed *policy.Editor) error {
	cm := d.configMode()
	cm.mu.Lock()
	defer cm.mu.Unlock()
	running := d.Config()
	if ed.Base() != running {
		if err := ed.Rebase(running); err != nil {
			return err
		}
	}
	var nc *policy.Config
	if ed.Changed() {
		var err error
		if nc, err = ed.Candidate(); err != nil {
			var l policy.ErrorList
			if errors.As(err, &l) {
				return &policy.CommitError{Errs: l}
			}
			return err
		}
	}
	if nc == nil {
		// IOS logs CONFIG_I whenever configuration mode is left.
		logConfigured(ctx, cm.log)
		return nil // nothing changed: no new configuration, no hook
	}
	old, err := d.apply(nc)
	if err != nil {
		return err // still in configuration mode: fix the candidate, or abort
	}
	logConfigured(ctx, cm.log)
	d.runHook(old, nc)
	return nil
}

// logConfigured logs IOS's CONFIG_I with the user who left configuration
// mode: "Configured from console by alice on vty (pid 1234)" for a
// control-socket peer, "by console" for the daemon itself (in-process).
func logConfigured(ctx context.Context, l *slog.Logger) {
	if p, ok := ctl.PeerFrom(ctx); ok {
		syslog.LogFacility(l, "SYS", syslog.Notice, "CONFIG_I", "Configured from console by %s on %s", p.User, p.Line())
		return
	}
	syslog.LogFacility(l, "SYS", syslog.Notice, "CONFIG_I", "Configured from console by console")
}

// auditCommand logs a state-changing control command (ctl.AuditFunc) in
// the words of IOS's archive log config (notify syslog), and the refusal
// of one to a read-only user.
func auditCommand(l *slog.Logger, user, line string, denied bool) {
	if denied {
		syslog.LogFacility(l, "PARSER", syslog.Warning, "CFGLOG_DENIED", "User:%s  denied command:%s (read-only access)", user, line)
		return
	}
	syslog.LogFacility(l, "PARSER", syslog.Notice, "CFGLOG_LOGGEDCMD", "User:%s  logged command:%s", user, line)
}

// configSession is one `configure terminal` (ctl.ConfigSession).
type configSession struct {
	d  *Daemon
	ed *policy.Editor
}

func (s *configSession) Mode() string       { return s.ed.Prompt() }
func (s *configSession) Commands() []string { return append(s.ed.Commands(), "show") }

// editorCommands are the configuration session's own commands, known in
// every mode (policy.Editor.Apply, the ctl server and Line below).
var editorCommands = []ctl.GrammarCommand{
	{Syntax: "end", Help: "Exit from configure mode (commit the changes)"},
	{Syntax: "exit", Help: "Exit from the current mode (in global configuration mode: end)"},
	{Syntax: "abort", Help: "Exit from configure mode, discarding the changes"},
	{Syntax: "do LINE", Help: "To run exec commands in config mode"},
	{Syntax: "no LINE", Help: "Negate a command or set its defaults"},
	{Syntax: "show configuration", Help: "The candidate configuration, as end would commit it"},
}

// Grammar describes the current mode's commands and the enclosing modes'
// (ctl.ConfigGrammar): abbreviations, ? and TAB at every word.
func (s *configSession) Grammar() *ctl.Grammar {
	var levels [][]ctl.GrammarCommand
	for i, lv := range s.ed.Syntaxes() {
		var cmds []ctl.GrammarCommand
		for _, syn := range lv {
			cmds = append(cmds, ctl.GrammarCommand{Syntax: syn, Help: configHelp(syn)})
		}
		if i == 0 {
			cmds = append(cmds, editorCommands...)
			if s.d.keyCommands() != nil {
				cmds = append(cmds, keyGrammar...) // keys.go
			}
		}
		levels = append(levels, cmds)
	}
	return ctl.NewGrammar(levels)
}

// configHelp is the help ? shows for a configuration command: its usage.
func configHelp(syntax string) string { return "Usage: " + syntax }

func (s *configSession) Line(ctx context.Context, line string) (string, string, error) {
	if w := strings.Fields(strings.ToLower(line)); len(w) == 2 && w[0] == "show" && strings.HasPrefix("configuration", w[1]) && len(w[1]) >= 4 {
		// The candidate, as end would commit it (line numbers as in its errors).
		return s.ed.Text(), s.ed.Prompt(), nil
	}
	if k := s.d.keyCommands(); k != nil && isKeyCommand(line) {
		// crypto key generate and the like act at once, as on IOS, and
		// are not part of the configuration (keys.go).
		text, err := k.configLine(ctx, line)
		return text, s.ed.Prompt(), err
	}
	prompt, err := s.ed.Apply(line)
	switch {
	case errors.Is(err, policy.ErrAbort):
		return "% Configuration changes discarded\n", "", nil
	case err != nil:
		return "", prompt, err
	case prompt != "":
		return "", prompt, nil
	}
	if err := s.d.commit(ctx, s.ed); err != nil {
		return "", s.ed.Prompt(), err
	}
	return "", "", nil
}

// WriteMemory saves the running configuration (canonical, as show
// running-config prints it) to the file it was loaded from, atomically: a
// temporary file in the same directory, fsync, rename, fsync of the
// directory. A symbolic link is followed; the file's permissions are kept
// (0600 for a new file: it holds pre-shared keys).
func (d *Daemon) WriteMemory() error {
	cm := d.configMode()
	cm.mu.Lock()
	defer cm.mu.Unlock()
	c := d.Config()
	if c.File == "" {
		return errors.New("% The running configuration was not loaded from a file: nowhere to save it (start isakmpd with -f FILE)")
	}
	if err := writeFileAtomic(c.File, []byte(c.Render())); err != nil {
		return fmt.Errorf("%% Error saving the configuration to %s: %v", c.File, err)
	}
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	mode := os.FileMode(0o600)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	return atomicfile.Write(path, data, mode)
}
