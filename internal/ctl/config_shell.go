package ctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"golang.org/x/term"
)

// ErrUncommitted is returned by ConfigShell.Close when the shell was still
// in configuration mode: the changes since configure terminal were
// discarded.
var ErrUncommitted = errors.New("configuration mode was not left with end: the changes were discarded")

// ConfigShell is a Shell that follows `configure terminal`: after it, the
// lines go to the daemon's configuration session (with their own prompt,
// `HOST(config)#`, `HOST(config-gdoi-group)#`, ...) until `end`, Ctrl-Z or
// `exit` at the top. In configuration mode `do LINE` runs an EXEC command
// (prompts and filters as usual) and `abort` leaves without committing.
// The zero value is not usable: set Shell.
type ConfigShell struct {
	*Shell
	session string // "" in EXEC mode
	mode    string // "(config)", ...
}

// NewConfigShell wraps sh.
func NewConfigShell(sh *Shell) *ConfigShell { return &ConfigShell{Shell: sh} }

// Mode returns the configuration mode prompt ("(config)", ...), "" in EXEC
// mode.
func (cs *ConfigShell) Mode() string {
	if cs.session == "" {
		return ""
	}
	return cs.mode
}

// follow takes the configuration state a response carries.
func (cs *ConfigShell) follow(resp *WireResponse) {
	if resp == nil {
		return
	}
	if st, ok := ParseConfigState(resp); ok {
		cs.session, cs.mode = st.Session, st.Mode
	} else if IsNoConfigSession(resp) {
		cs.session, cs.mode = "", ""
	}
}

// configLine sends one line of the configuration session.
func (cs *ConfigShell) configLine(ctx context.Context, line string, complete bool) (*WireResponse, error) {
	cmd := CmdConfigSession + " " + cs.session
	if complete {
		cmd += " complete"
	}
	rctx, cancel := ctx, context.CancelFunc(func() {})
	if cs.Timeout > 0 && !complete {
		rctx, cancel = context.WithTimeout(ctx, cs.Timeout)
	}
	defer cancel()
	resp, err := cs.Client.Do(rctx, &WireRequest{Cmd: cmd, Input: line})
	if err != nil && errors.Is(err, ErrConnection) {
		cs.session, cs.mode = "", "" // the session belonged to the lost connection's daemon run
	}
	return resp, err
}

// configLineAsk sends one line of the configuration session and answers
// its prompts with ask (crypto key generate asks before replacing a key).
func (cs *ConfigShell) configLineAsk(ctx context.Context, line string, show func(string), ask func(prompt string) (string, error)) (*WireResponse, error) {
	cmd := CmdConfigSession + " " + cs.session
	req := &WireRequest{Cmd: cmd, Input: line}
	for round := 0; ; round++ {
		rctx, cancel := ctx, context.CancelFunc(func() {})
		if cs.Timeout > 0 {
			rctx, cancel = context.WithTimeout(ctx, cs.Timeout)
		}
		resp, err := cs.Client.Do(rctx, req)
		cancel()
		if err != nil {
			if errors.Is(err, ErrConnection) {
				cs.session, cs.mode = "", ""
			}
			return resp, err
		}
		if resp.Prompt == "" || resp.Token == "" {
			return resp, nil
		}
		if round >= maxRounds {
			return nil, fmt.Errorf("%q asked %d questions; giving up", line, round)
		}
		if resp.Text != "" {
			show(resp.Text)
		}
		ans, err := ask(resp.Prompt)
		if err != nil {
			return nil, err
		}
		req = &WireRequest{Cmd: cmd, Input: line, Answer: ans, Token: resp.Token}
	}
}

// doLine reports whether line is `do LINE` and returns LINE.
func doLine(line string) (string, bool) {
	w := strings.Fields(line)
	if len(w) < 2 || !strings.EqualFold(w[0], "do") {
		return "", false
	}
	return strings.TrimSpace(strings.TrimSpace(line)[len(w[0]):]), true
}

// RunCommand runs one line without a terminal, in the mode the shell is
// in: output to Out, failures to Err (returning ErrFailed or a connection
// error), like Shell.RunCommand.
func (cs *ConfigShell) RunCommand(ctx context.Context, line string) error {
	line = strings.TrimSpace(line)
	if line == "" {
		return nil
	}
	var resp *WireResponse
	var err error
	exec := line
	if cs.session != "" {
		if l, ok := doLine(line); ok {
			exec = l
		} else {
			exec = ""
			resp, err = cs.configLineAsk(ctx, line, func(s string) { io.WriteString(cs.Out, ensureNL(s)) }, cs.scriptAnswer(line))
		}
	}
	if exec != "" {
		resp, err = cs.exec(ctx, exec, cs.Out, cs.scriptAnswer(exec))
	}
	if err != nil {
		fmt.Fprintf(cs.Err, "%s: %v\n", cs.name(), err)
		return err
	}
	if exec == line || exec == "" { // not for do LINE
		cs.follow(resp)
	}
	return cs.report(line, exec == line || exec == "", resp)
}

// report is report for this shell's output and name.
func (cs *ConfigShell) report(line string, caret bool, resp *WireResponse) error {
	return report(cs.Out, cs.Err, cs.name(), line, caret, resp)
}

// RunScript runs the lines of r without a terminal, like Shell.RunScript;
// in configuration mode `exit` and `end` go to the session, and a script
// that ends (or fails) in configuration mode commits nothing.
func (cs *ConfigShell) RunScript(ctx context.Context, r io.Reader) error {
	defer cs.scriptNotes()()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxRequest)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '!' || line[0] == '#' {
			continue
		}
		if cs.session == "" && isExit(line) {
			return nil
		}
		if err := cs.RunCommand(ctx, line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(cs.Err, "%s: reading commands: %v\n", cs.name(), err)
		return err
	}
	return nil
}

// Close leaves configuration mode without committing if the shell is in
// it, and then returns ErrUncommitted (after saying so on Err).
func (cs *ConfigShell) Close(ctx context.Context) error {
	if cs.session == "" {
		return nil
	}
	cs.configLine(ctx, "abort", false)
	cs.session, cs.mode = "", ""
	fmt.Fprintf(cs.Err, "%s: %v\n", cs.name(), ErrUncommitted)
	return ErrUncommitted
}

// ctrlZ follows each Ctrl-Z with Enter: the completion callback, which
// sees the Ctrl-Z when the terminal processes it (in the mode of that
// moment), makes the line "end" in configuration mode, or empties it.
// Ctrl-C, which the terminal would take for end of input (leaving the
// shell, and with it `groupvpn lab --cli`), becomes keyCtrlC followed by
// Enter: as on IOS it abandons the line being typed (or the question being
// asked) and, in configuration mode, ends it like Ctrl-Z.
type ctrlZ struct {
	r       io.Reader
	pending []byte
}

// keyCtrlC is Ctrl-C as the completion callback sees it: a rune of the
// private use area, which no terminal sends.
const keyCtrlC = '\uE003'

func (z *ctrlZ) Read(p []byte) (int, error) {
	if len(z.pending) == 0 {
		n, err := z.r.Read(p)
		if n == 0 || (!slices.Contains(p[:n], 0x1a) && !slices.Contains(p[:n], 0x03)) {
			return n, err
		}
		for _, b := range p[:n] {
			switch b {
			case 0x1a:
				z.pending = append(z.pending, b, '\r')
			case 0x03:
				z.pending = append(z.pending, string(keyCtrlC)+"\r"...)
			default:
				z.pending = append(z.pending, b)
			}
		}
	}
	n := copy(p, z.pending)
	z.pending = z.pending[n:]
	return n, nil
}

// Interactive runs the operator's session on a terminal like
// Shell.Interactive, following configuration mode: the prompt shows the
// mode, TAB and '?' list the mode's commands, Ctrl-Z is end. exit, quit or
// Ctrl-D leave the shell from EXEC mode; Ctrl-D in configuration mode
// discards the changes and leaves.
func (cs *ConfigShell) Interactive(ctx context.Context, rw io.ReadWriter, width, height int) error {
	host, err := cs.Client.Hostname(ctx)
	if err != nil {
		host = "groupvpn"
	}
	t := term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{&ctrlZ{r: rw}, rw}, host+"#")
	defer showNotes(cs.Notes, t)()
	// terminal monitor: the daemon's log lines, on a connection of their
	// own, shown like notes (above the line being typed).
	monLines := make(chan string, monitorQueue)
	defer showNotes(monLines, t)()
	var stopMonitor func()
	defer func() {
		if stopMonitor != nil {
			stopMonitor()
		}
	}()
	monitor := func(on bool) {
		switch {
		case on && stopMonitor == nil:
			stop, err := monitorStream(cs.Client.Path(), monLines)
			if err != nil {
				fmt.Fprintf(t, "%% %v\n", err)
				return
			}
			stopMonitor = stop
		case !on && stopMonitor != nil:
			stopMonitor()
			stopMonitor = nil
		}
	}
	setPrompt := func() {
		cs.prompt = host + cs.Mode() + "#"
		t.SetPrompt(cs.prompt)
	}
	setPrompt()
	t.History = &history{}
	if width > 0 && height > 0 {
		t.SetSize(width, height)
	}
	t.AutoCompleteCallback = func(line string, pos int, key rune) (string, int, bool) {
		switch key {
		case 0x1a, keyCtrlC: // Ctrl-Z or Ctrl-C, followed by Enter (ctrlZ)
			if cs.session != "" {
				return "end", 3, true
			}
			return "", 0, true
		case '\t':
			return cs.tabKey(ctx, t, line, pos)
		case '?':
			if pos == len(line) && (cs.session != "" || !inRegex(line)) {
				cs.helpKey(ctx, t, line)
				return line, pos, true
			}
		}
		return "", 0, false
	}
	for {
		line, err := t.ReadLine()
		if err != nil && !errors.Is(err, term.ErrPasteIndicator) {
			if errors.Is(err, io.EOF) {
				io.WriteString(t, "\n")
				if cs.session != "" {
					cs.configLine(ctx, "abort", false)
					cs.session = ""
					io.WriteString(t, "% Configuration changes discarded (left without end)\n")
				}
				return nil
			}
			return err
		}
		typed := line
		line = strings.TrimSpace(line)
		config := cs.session != ""
		switch {
		case line == "":
			continue
		case !config && isExit(line):
			return nil
		case !config && strings.ToLower(line) == "help":
			line = CmdHelp
		}
		var resp *WireResponse
		exec, caret := typed, true
		if config {
			if l, ok := doLine(line); ok {
				exec, caret = l, false
			} else {
				exec = ""
			}
		}
		switch {
		case line == CmdHelp:
			resp, err = cs.Client.Do(ctx, &WireRequest{Cmd: CmdHelp})
		case exec == "":
			resp, err = cs.configLineAsk(ctx, line, func(s string) { io.WriteString(t, ensureNL(s)) },
				func(p string) (string, error) { return cs.termAsk(t, p) })
		default:
			pg := &pager{out: t, in: rw, length: cs.pageLength(height)}
			resp, err = cs.exec(ctx, exec, pg,
				func(p string) (string, error) { pg.lines = 0; return cs.termAsk(t, p) })
			if err == nil && resp.OK {
				cs.setLength(exec)
			}
		}
		if err != nil {
			if errors.Is(err, ErrStopped) { // q at --More--
				setPrompt()
				continue
			}
			if errors.Is(err, errAborted) {
				io.WriteString(t, "% Aborted\n")
			} else if errors.Is(err, ErrConnection) {
				fmt.Fprintf(t, "%% %v\n%% The next command reconnects.\n", err)
			} else {
				fmt.Fprintf(t, "%% %v\n", err)
			}
			setPrompt()
			continue
		}
		if st, ok := ParseTerminalState(resp); ok {
			monitor(st.Monitor)
		}
		if !config || exec == "" {
			wasConfig := cs.session != ""
			cs.follow(resp)
			if wasConfig && cs.session == "" {
				if h, err := cs.Client.Hostname(ctx); err == nil {
					host = h // hostname may have been changed
				}
			}
		}
		if resp.Text != "" {
			io.WriteString(t, ensureNL(resp.Text))
		}
		if !resp.OK {
			at, lead := typed, 0
			if config && exec == "" { // the configuration line travels trimmed
				at, lead = strings.TrimSpace(typed), len(typed)-len(strings.TrimLeft(typed, " \t"))
			}
			if caret && resp.Pos != nil && *resp.Pos >= 0 && *resp.Pos <= len(at) {
				col := utf8.RuneCountInString(cs.prompt) + lead + utf8.RuneCountInString(at[:*resp.Pos])
				io.WriteString(t, strings.Repeat(" ", col)+"^\n")
			}
			io.WriteString(t, ensureNL(resp.Error))
		}
		setPrompt()
	}
}

// complete asks for the completions of line in the current mode.
func (cs *ConfigShell) complete(ctx context.Context, line string) (*Completion, string, error) {
	if cs.session == "" {
		return cs.Client.Complete(ctx, line)
	}
	resp, err := cs.configLine(ctx, line, true)
	if err != nil {
		return nil, "", err
	}
	if !resp.OK {
		cs.follow(resp)
		return nil, "", errors.New(resp.Error)
	}
	var comp Completion
	if err := json.Unmarshal(resp.Data, &comp); err != nil {
		return nil, "", fmt.Errorf("completion data: %w", err)
	}
	return &comp, resp.Text, nil
}

// helpKey is Shell.help in the current mode.
func (cs *ConfigShell) helpKey(ctx context.Context, t *term.Terminal, line string) {
	_, text, err := cs.complete(ctx, line)
	if err != nil {
		text = "% " + err.Error() + "\n"
	}
	io.WriteString(t, cs.prompt+line+"?\n"+ensureNL(text))
}

// tabKey is Shell.tab in the current mode.
func (cs *ConfigShell) tabKey(ctx context.Context, t *term.Terminal, line string, pos int) (string, int, bool) {
	return tabComplete(t, cs.prompt, line, pos, func(before string) (*Completion, string, error) {
		return cs.complete(ctx, before)
	})
}
