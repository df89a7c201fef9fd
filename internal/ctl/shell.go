package ctl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/term"
)

// ErrFailed is returned by Shell methods when a command failed; the failure
// has already been written for the operator.
var ErrFailed = errors.New("command failed")

// ErrNoTerminal is returned when a command asks a question, no answer was
// given in advance and there is no terminal to ask.
var ErrNoTerminal = errors.New("no terminal to answer the prompt")

// maxRounds bounds the questions one command may ask (a PEM key pasted
// line by line, crypto key import ... pem terminal, is up to ~60).
const maxRounds = 128

// Shell is the client side of the CLI: it runs command lines through a
// Client, prints what comes back and answers prompts.
type Shell struct {
	Client *Client
	Out    io.Writer // command output (non-interactive)
	Err    io.Writer // errors (non-interactive)
	// Answers are given to prompts in order when there is no terminal;
	// after them, Yes answers "yes" to every prompt; otherwise a prompt
	// fails the command with ErrNoTerminal. A script never blocks.
	Answers []string
	Yes     bool
	Timeout time.Duration // per request; 0 waits as long as the daemon takes
	Name    string        // prefix of error lines; default "groupvpn cli"
	// Notes, when set, are lines shown while the shell runs (notes.go):
	// above the prompt on a terminal, between output lines in a script.
	Notes <-chan string

	prompt string // interactive prompt
	// length is `terminal length N` typed in this session: lines per
	// page (0: no paging); -1 until typed (the terminal's height).
	length    int
	lengthSet bool
}

func (sh *Shell) name() string {
	if sh.Name == "" {
		return "groupvpn cli"
	}
	return sh.Name
}

// exec runs one line, asking ask for each prompt's answer. Its output is
// written to out as it arrives (the response returned has no Text).
func (sh *Shell) exec(ctx context.Context, line string, out io.Writer, ask func(prompt string) (string, error)) (*WireResponse, error) {
	req := &WireRequest{Cmd: line}
	for round := 0; ; round++ {
		rctx, cancel := ctx, context.CancelFunc(func() {})
		if sh.Timeout > 0 {
			rctx, cancel = context.WithTimeout(ctx, sh.Timeout)
		}
		resp, err := sh.Client.Stream(rctx, req, out)
		cancel()
		if err != nil {
			return nil, err
		}
		if resp.Prompt == "" || resp.Token == "" {
			return resp, nil
		}
		if round >= maxRounds {
			return nil, fmt.Errorf("%q asked %d questions; giving up", line, round)
		}
		ans, err := ask(resp.Prompt)
		if err != nil {
			return nil, err
		}
		req = &WireRequest{Cmd: line, Answer: ans, Token: resp.Token}
	}
}

// scriptAnswer answers a prompt without a terminal, or refuses.
func (sh *Shell) scriptAnswer(line string) func(string) (string, error) {
	return func(prompt string) (string, error) {
		var a string
		switch {
		case len(sh.Answers) > 0:
			a, sh.Answers = sh.Answers[0], sh.Answers[1:]
		case sh.Yes:
			a = "yes"
		default:
			return "", fmt.Errorf("%w: %q asks %q; pass the answer explicitly: groupvpn cli --yes -c %q (or --answer no; repeat --answer for several questions)",
				ErrNoTerminal, line, strings.TrimSpace(lastLine(prompt)), line)
		}
		fmt.Fprintf(sh.Out, "%s%s\n", prompt, a)
		return a, nil
	}
}

// RunCommand runs one command line without a terminal: output to Out,
// failures to Err (returning ErrFailed or a connection error).
func (sh *Shell) RunCommand(ctx context.Context, line string) error {
	line = strings.TrimSpace(line)
	if line == "" {
		return nil
	}
	resp, err := sh.exec(ctx, line, sh.Out, sh.scriptAnswer(line))
	if err != nil {
		fmt.Fprintf(sh.Err, "%s: %v\n", sh.name(), err)
		return err
	}
	return report(sh.Out, sh.Err, sh.name(), line, true, resp)
}

// report prints a response's output to out and, for a failure, the line,
// the '^' marker (when caret and pos is about line) and the error to
// errw, returning ErrFailed. Both shells use it.
func report(out, errw io.Writer, name, line string, caret bool, resp *WireResponse) error {
	if resp.Text != "" {
		io.WriteString(out, ensureNL(resp.Text))
	}
	if resp.OK {
		return nil
	}
	head := name + ": "
	fmt.Fprintf(errw, "%s%s\n", head, line)
	if caret && resp.Pos != nil && *resp.Pos >= 0 && *resp.Pos <= len(line) {
		fmt.Fprintf(errw, "%s^\n", strings.Repeat(" ", utf8.RuneCountInString(head)+utf8.RuneCountInString(line[:*resp.Pos])))
	}
	fmt.Fprintf(errw, "%s\n", resp.Error)
	return ErrFailed
}

// RunScript runs the lines of r as commands, without a terminal. Empty
// lines and comments ('!' or '#') are skipped; "exit", "quit" and "end"
// stop. The first failure stops the script.
func (sh *Shell) RunScript(ctx context.Context, r io.Reader) error {
	defer sh.scriptNotes()()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxRequest)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '!' || line[0] == '#' {
			continue
		}
		if isExit(line) {
			return nil
		}
		if err := sh.RunCommand(ctx, line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(sh.Err, "%s: reading commands: %v\n", sh.name(), err)
		return err
	}
	return nil
}

func isExit(line string) bool {
	switch strings.ToLower(line) {
	case "exit", "quit", "logout":
		return true
	}
	return false
}

func ensureNL(s string) string {
	if s != "" && !strings.HasSuffix(s, "\n") {
		return s + "\n"
	}
	return s
}

// Interactive runs the operator's session on a terminal (already in raw
// mode, or any io.ReadWriter speaking VT100 for tests): prompt HOSTNAME#,
// history on up/down, TAB completion, '?' help, prompts answered by the
// operator. It returns nil on exit, quit or Ctrl-D.
func (sh *Shell) Interactive(ctx context.Context, rw io.ReadWriter, width, height int) error {
	host, err := sh.Client.Hostname(ctx)
	if err != nil {
		host = "groupvpn"
	}
	sh.prompt = host + "#"
	t := term.NewTerminal(rw, sh.prompt)
	defer showNotes(sh.Notes, t)()
	t.History = &history{}
	if width > 0 && height > 0 {
		t.SetSize(width, height)
	}
	t.AutoCompleteCallback = func(line string, pos int, key rune) (string, int, bool) {
		switch key {
		case '\t':
			return sh.tab(ctx, t, line, pos)
		case '?':
			if pos == len(line) && !inRegex(line) {
				sh.help(ctx, t, line)
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
				return nil
			}
			return err
		}
		typed := line
		line = strings.TrimSpace(line)
		switch {
		case line == "":
			continue
		case isExit(line):
			return nil
		case strings.ToLower(line) == "help":
			line = CmdHelp
		}
		var resp *WireResponse
		if line == CmdHelp {
			resp, err = sh.Client.Do(ctx, &WireRequest{Cmd: CmdHelp})
		} else {
			pg := &pager{out: t, in: rw, length: sh.pageLength(height)}
			resp, err = sh.exec(ctx, typed, pg,
				func(p string) (string, error) { pg.lines = 0; return sh.termAsk(t, p) })
			if err == nil && resp.OK {
				sh.setLength(line)
			}
		}
		if err != nil {
			if errors.Is(err, ErrStopped) {
				continue // q at --More--
			}
			if errors.Is(err, errAborted) {
				io.WriteString(t, "% Aborted\n")
			} else if errors.Is(err, ErrConnection) {
				fmt.Fprintf(t, "%% %v\n%% The next command reconnects.\n", err)
			} else {
				fmt.Fprintf(t, "%% %v\n", err)
			}
			continue
		}
		if resp.Text != "" {
			io.WriteString(t, ensureNL(resp.Text))
		}
		if !resp.OK {
			if resp.Pos != nil && *resp.Pos >= 0 && *resp.Pos <= len(typed) {
				col := utf8.RuneCountInString(sh.prompt) + utf8.RuneCountInString(typed[:*resp.Pos])
				io.WriteString(t, strings.Repeat(" ", col)+"^\n")
			}
			io.WriteString(t, ensureNL(resp.Error))
		}
	}
}

var errAborted = errors.New("aborted")

// termAsk shows a prompt (its last line as the input prompt) and reads the
// answer, outside the command history and without completion.
func (sh *Shell) termAsk(t *term.Terminal, prompt string) (string, error) {
	last := lastLine(prompt)
	if head := strings.TrimSuffix(strings.TrimRight(prompt, "\n"), last); head != "" {
		io.WriteString(t, head)
	}
	t.SetPrompt(last)
	hist, cb := t.History, t.AutoCompleteCallback
	interrupted := false
	t.History = &history{}
	t.AutoCompleteCallback = func(_ string, _ int, key rune) (string, int, bool) {
		if key == keyCtrlC { // Ctrl-C (ctrlZ): abandon the question
			interrupted = true
			return "", 0, true
		}
		return "", 0, false
	}
	defer func() {
		t.SetPrompt(sh.prompt)
		t.History, t.AutoCompleteCallback = hist, cb
	}()
	ans, err := t.ReadLine()
	if (err != nil && !errors.Is(err, term.ErrPasteIndicator)) || interrupted {
		return "", errAborted
	}
	return strings.TrimSpace(ans), nil
}

// inRegex reports whether the end of line is inside a filter's regular
// expression, where '?' is an ordinary character.
func inRegex(line string) bool {
	_, stages := splitFilters(line)
	return len(stages) > 0 && len(tokenize(stages[len(stages)-1].text, 0)) >= 2
}

// help lists what may come next, IOS style, and redraws the line.
func (sh *Shell) help(ctx context.Context, t *term.Terminal, line string) {
	_, text, err := sh.Client.Complete(ctx, line)
	if err != nil {
		text = "% " + err.Error() + "\n"
	}
	io.WriteString(t, sh.prompt+line+"?\n"+ensureNL(text))
}

// tab completes the word before the cursor: a unique keyword in full, or
// the longest common prefix of several; otherwise it lists the choices.
func (sh *Shell) tab(ctx context.Context, t *term.Terminal, line string, pos int) (string, int, bool) {
	return tabComplete(t, sh.prompt, line, pos, func(before string) (*Completion, string, error) {
		return sh.Client.Complete(ctx, before)
	})
}

// tabComplete is the TAB key of both shells; complete asks the daemon for
// the candidates of the line before the cursor.
func tabComplete(t *term.Terminal, prompt, line string, pos int, complete func(string) (*Completion, string, error)) (string, int, bool) {
	before := line[:pos]
	comp, text, err := complete(before)
	if err != nil || !strings.HasSuffix(strings.ToLower(before), strings.ToLower(comp.Partial)) {
		return line, pos, true
	}
	var kws []string
	for _, c := range comp.Candidates {
		if c.Keyword {
			kws = append(kws, c.Word)
		}
	}
	start := pos - len(comp.Partial)
	if comp.Partial != "" {
		switch {
		case len(kws) == 1:
			ins := kws[0] + " "
			return before[:start] + ins + line[pos:], start + len(ins), true
		case len(kws) > 1:
			if p := commonPrefix(kws); len(p) > len(comp.Partial) {
				return before[:start] + p + line[pos:], start + len(p), true
			}
		}
	}
	io.WriteString(t, prompt+line+"\n"+ensureNL(text))
	return line, pos, true
}

func commonPrefix(ws []string) string {
	p := ws[0]
	for _, w := range ws[1:] {
		for !strings.HasPrefix(w, p) {
			p = p[:len(p)-1]
		}
	}
	return p
}

// history keeps the last 256 non-empty lines, without repeats in a row.
type history struct{ lines []string }

func (h *history) Add(s string) {
	s = strings.TrimSpace(s)
	if s == "" || (len(h.lines) > 0 && h.lines[len(h.lines)-1] == s) {
		return
	}
	if len(h.lines) == 256 {
		h.lines = h.lines[1:]
	}
	h.lines = append(h.lines, s)
}
func (h *history) Len() int        { return len(h.lines) }
func (h *history) At(i int) string { return h.lines[len(h.lines)-1-i] }
