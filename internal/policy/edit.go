package policy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// RunningConfigName is the file name in the errors of a candidate
// configuration being edited (Editor): `running-config:LINE: reason`, LINE
// counting in the candidate's canonical rendering (Editor.Text).
const RunningConfigName = "running-config"

// ErrAbort is what Editor.Apply returns for `abort`: configuration mode
// ends and the candidate is discarded. It is not a failure.
var ErrAbort = errors.New("configuration changes discarded")

// Editor edits a configuration by IOS configuration-mode commands, as
// `configure terminal` does (SPEC O2). It holds a candidate configuration,
// in canonical text (Render), and the mode the operator is in: the block
// headers entered, e.g. ["crypto gdoi group GET", "server local",
// "sa ipsec 1"].
//
// Apply takes one line at a time. Each line is checked on its own (syntax,
// values, duplicates) by the configuration parser, in its mode, against the
// whole candidate; a refused line leaves the candidate and the mode as they
// were. References between blocks (sa ipsec → profile, profile →
// transform-set, ...) are only checked at `end`: the states in between may
// be incomplete (`no profile gdoi-p` before `profile gdoi-p2`). At `end` the
// whole candidate must parse exactly as a configuration file would;
// otherwise Apply refuses with every error (CommitError) and the editor
// stays in configuration mode, so the running configuration is never
// replaced by an invalid one.
//
// An Editor is not safe for concurrent use.
type Editor struct {
	file, dir string
	base      *Config
	text      string   // the candidate, canonical
	path      []string // headers of the blocks entered, canonical
	log       []editStep
}

// editStep is one applied change, for Rebase.
type editStep struct {
	path []string
	line string
}

// NewEditor starts editing running (which is not modified).
func NewEditor(running *Config) *Editor {
	return &Editor{file: running.File, dir: running.Dir, base: running, text: running.Render()}
}

// Base is the configuration the editor started from (or was rebased on).
func (e *Editor) Base() *Config { return e.base }

// Text is the candidate configuration in canonical form.
func (e *Editor) Text() string { return e.text }

// Changed reports whether the candidate differs from the base.
func (e *Editor) Changed() bool { return e.text != e.base.Render() }

// Path returns the headers of the blocks entered, outermost first (empty
// in global configuration mode).
func (e *Editor) Path() []string { return slices.Clone(e.path) }

// Prompt is the IOS prompt suffix of the current mode, e.g. "(config)" or
// "(gdoi-sa-ipsec)"; see ModePrompt.
func (e *Editor) Prompt() string {
	st := e.frames()
	return ModePrompt(st[len(st)-1].mode.name)
}

// modePrompts maps the parser's mode names to the IOS prompts.
var modePrompts = map[string]string{
	"global configuration":                    "(config)",
	"crypto isakmp policy":                    "(config-isakmp)",
	"crypto ipsec transform-set":              "(cfg-crypto-trans)",
	"crypto ipsec profile":                    "(ipsec-profile)",
	"ip access-list extended":                 "(config-ext-nacl)",
	"ip access-list standard":                 "(config-std-nacl)",
	"crypto gdoi group":                       "(config-gdoi-group)",
	"crypto gdoi group server local":          "(gdoi-local-server)",
	"crypto gdoi group server local sa ipsec": "(gdoi-sa-ipsec)",
	"redundancy":                              "(gdoi-coop-ks-config)",
	"crypto map":                              "(config-crypto-map)",
	"crypto map fail-close":                   "(crypto-map-fail-close)",
	"interface":                               "(config-if)",
	"crypto ikev2 proposal":                   "(config-ikev2-proposal)",
	"crypto ikev2 policy":                     "(config-ikev2-policy)",
	"crypto ikev2 keyring":                    "(config-ikev2-keyring)",
	"crypto ikev2 keyring peer":               "(config-ikev2-keyring-peer)",
	"crypto ikev2 profile":                    "(config-ikev2-profile)",
}

// ModePrompt returns the prompt suffix of a configuration mode named as in
// the parser's messages ("crypto gdoi group server local sa ipsec" →
// "(gdoi-sa-ipsec)").
func ModePrompt(mode string) string {
	if p, ok := modePrompts[mode]; ok {
		return p
	}
	return "(config-" + strings.ReplaceAll(mode, " ", "-") + ")"
}

// CommitError is Apply's refusal of `end`: the candidate is not a valid
// configuration. Errs are the parser's errors, in running-config:LINE form.
type CommitError struct {
	Errs ErrorList
}

func (e *CommitError) Error() string {
	return "% Configuration not committed: it would be invalid (the running configuration is unchanged;\n" +
		"% still in configuration mode: fix it and enter end again, or abort to discard the changes):\n" +
		e.Errs.Error()
}

func (e *CommitError) Unwrap() error { return e.Errs }

// Apply runs one configuration-mode line and returns the prompt of the mode
// it leaves the editor in. Besides the configuration commands of
// docs/config.md in their modes (a command of an enclosing mode leaves the
// sub-modes, as on IOS) it knows:
//
//   - `exit`: up one mode; in global configuration mode, like end.
//   - `end`: validates the whole candidate; returns ("", nil) when it is a
//     valid configuration (the caller commits Candidate), or the current
//     prompt and a *CommitError.
//   - `abort`: returns ("", ErrAbort): the caller discards the editor.
//   - `no COMMAND...`: removes the lines of the current mode (or, failing
//     that, of the nearest enclosing mode that has one) that start with the
//     words given: `no profile gdoi-p`, `no match address ipv4 ACL`,
//     `no rekey lifetime`, `no sa ipsec 1` (with its block), `no crypto gdoi
//     group G`, `no crypto map M 10`, `no crypto isakmp key K address A`;
//     a setting with a default returns to it. Access-list entries match by
//     meaning, with or without their sequence number (`no permit ip any
//     any`, `no 20`). `no replay` is a command of its own (sa ipsec mode).
//
// Empty lines and comments ("!") are ignored. A refused line returns the
// current prompt and an error starting with "% "; the candidate and the
// mode are unchanged.
func (e *Editor) Apply(line string) (string, error) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '!' {
		return e.Prompt(), nil
	}
	words := strings.Fields(line)
	if len(words) == 1 {
		switch strings.ToLower(words[0]) {
		case "end":
			return e.end()
		case "exit":
			if len(e.path) == 0 {
				return e.end()
			}
			e.path = e.path[:len(e.path)-1]
			return e.Prompt(), nil
		case "abort":
			return "", ErrAbort
		}
	}
	step := editStep{path: slices.Clone(e.path), line: line}
	if strings.EqualFold(words[0], "no") && !e.isCommand(words) {
		if err := e.remove(words[1:]); err != nil {
			return e.Prompt(), err
		}
	} else if err := e.set(line); err != nil {
		return e.Prompt(), err
	}
	e.log = append(e.log, step)
	return e.Prompt(), nil
}

// Candidate parses the candidate as a configuration file (every reference
// resolved, key files loaded). Errors name the file running-config. The
// result's File and Dir are the base configuration's.
func (e *Editor) Candidate() (*Config, error) {
	c, err := ParseWith(e.file, []byte(e.text), e.base.opts)
	if err != nil {
		var l ErrorList
		if errors.As(err, &l) {
			out := make(ErrorList, len(l))
			for i, x := range l {
				y := *x
				y.File = RunningConfigName
				out[i] = &y
			}
			return nil, out
		}
		return nil, err
	}
	c.Dir = e.dir
	return c, nil
}

func (e *Editor) end() (string, error) {
	if _, err := e.Candidate(); err != nil {
		var l ErrorList
		if errors.As(err, &l) {
			return e.Prompt(), &CommitError{Errs: l}
		}
		return e.Prompt(), err
	}
	return "", nil
}

// Rebase replays the changes applied so far on running, a configuration
// committed meanwhile by someone else, and makes it the base. On a change
// that no longer applies it returns the reason and leaves the editor as it
// was.
func (e *Editor) Rebase(running *Config) error {
	n := NewEditor(running)
	for _, s := range e.log {
		n.path = n.existing(s.path)
		if _, err := n.Apply(s.line); err != nil {
			where := "global configuration mode"
			if len(s.path) > 0 {
				where = strings.Join(s.path, " / ")
			}
			return fmt.Errorf("%% The running configuration was changed by another session since configure terminal, and %q (in %s) no longer applies to it: %s", s.line, where, strings.TrimPrefix(err.Error(), "% "))
		}
	}
	n.path = n.existing(e.path)
	n.log = e.log
	*e = *n
	return nil
}

// Commands lists the first words of the commands of the current mode, and
// the editor's own (do, end, exit, no, abort), sorted: for completion.
func (e *Editor) Commands() []string {
	st := e.frames()
	set := map[string]bool{"do": true, "end": true, "exit": true, "no": true, "abort": true}
	for _, c := range st[len(st)-1].mode.cmds {
		if len(c.kw) > 0 && !c.hidden {
			set[c.kw[0]] = true
		}
	}
	out := make([]string, 0, len(set))
	for w := range set {
		out = append(out, w)
	}
	slices.Sort(out)
	return out
}

// set applies a configuration command: the candidate, then the headers of
// the current mode and the line, parsed (without resolving references) as
// one file. The parser re-enters the blocks and edits them.
func (e *Editor) set(line string) error {
	src := e.text + strings.Join(append(slices.Clone(e.path), line), "\n") + "\n"
	at := strings.Count(e.text, "\n") + len(e.path) + 1
	cfg, errs, stack := e.scan(src, at)
	if len(errs) > 0 {
		return lineError(errs, at)
	}
	e.text = cfg.Render()
	e.path = e.path[:0:0]
	for _, f := range stack[1:] {
		e.path = append(e.path, header(f.obj))
	}
	return nil
}

// lineError reports the parser's errors about a line typed (at) as "% reason";
// others (a key file that vanished) keep their running-config:LINE.
func lineError(errs ErrorList, at int) error {
	var b strings.Builder
	for i, x := range errs {
		if i > 0 {
			b.WriteByte('\n')
		}
		if x.Line == at {
			b.WriteString("% " + x.Msg)
		} else {
			b.WriteString("% " + x.Error())
		}
	}
	return errors.New(b.String())
}

// scan parses src like Parse but without resolving references; it returns
// the parser's mode stack after line at (1-based; 0: none).
func (e *Editor) scan(src string, at int) (*Config, ErrorList, []frame) {
	p := newParser(RunningConfigName, e.dir)
	stack := p.run(strings.Split(src, "\n"), at, false)
	p.cfg.File = e.file
	return p.cfg, p.errs, stack
}

// frames is the parser's mode stack for the current path.
func (e *Editor) frames() []frame {
	_, _, st := e.scan(strings.Join(e.path, "\n"), len(e.path))
	return st
}

// isCommand reports whether words are a command of the current mode or an
// enclosing one (`no replay` is; other `no` forms are not).
func (e *Editor) isCommand(words []string) bool {
	for _, f := range e.frames() {
		if c, _, _ := f.mode.find(words); c != nil && !c.weak { // interface's catch-all no is not an undo
			return true
		}
	}
	return false
}

// header is the canonical line (as Render writes it) that enters the
// block of a parser frame's object.
func header(obj any) string {
	switch o := obj.(type) {
	case *ISAKMPPolicy:
		return "crypto isakmp policy " + strconv.Itoa(o.Priority)
	case *TransformSet:
		return "crypto ipsec transform-set " + o.Name + " " + strings.Join(o.Transforms(), " ")
	case *IPsecProfile:
		return "crypto ipsec profile " + o.Name
	case *ACL:
		if o.Standard {
			return "ip access-list standard " + o.Name
		}
		return "ip access-list extended " + o.Name
	case *Group:
		return o.header()
	case *IKEv2Proposal:
		return "crypto ikev2 proposal " + o.Name
	case *IKEv2Policy:
		return "crypto ikev2 policy " + o.Name
	case *IKEv2Keyring:
		return "crypto ikev2 keyring " + o.Name
	case *IKEv2KeyringPeer:
		return "peer " + o.Name
	case *IKEv2Profile:
		return "crypto ikev2 profile " + o.Name
	case *ServerLocal:
		return "server local"
	case *Redundancy:
		return "redundancy"
	case *SAIPsec:
		return "sa ipsec " + strconv.Itoa(o.Seq)
	case *CryptoMapEntry:
		return fmt.Sprintf("crypto map %s %d gdoi", o.Map, o.Seq)
	case *FailClose:
		return "crypto map " + o.Map + " gdoi fail-close"
	case *Interface:
		return "interface " + o.Name
	}
	return "" // a mode this function does not know yet: TestEditHeadersMatchRender fails
}

// block is a line of the candidate and the lines of its sub-mode.
type block struct {
	text     string // trimmed
	children []*block
}

// blocks splits canonical text (one space of indentation per sub-mode)
// into a tree; "!" and "end" lines are dropped.
func blocks(text string) *block {
	root := &block{}
	stack := []*block{root}
	for _, l := range strings.Split(text, "\n") {
		t := strings.TrimSpace(l)
		if t == "" || t[0] == '!' || t == "end" {
			continue
		}
		depth := len(l) - len(strings.TrimLeft(l, " "))
		if depth+1 < len(stack) {
			stack = stack[:depth+1]
		}
		b := &block{text: t}
		parent := stack[len(stack)-1]
		parent.children = append(parent.children, b)
		stack = append(stack, b)
	}
	return root
}

func (b *block) write(sb *strings.Builder, depth int) {
	for _, c := range b.children {
		sb.WriteString(strings.Repeat(" ", depth))
		sb.WriteString(c.text)
		sb.WriteByte('\n')
		c.write(sb, depth+1)
	}
}

// walk returns the blocks along path (root first), as far as they exist.
func (b *block) walk(path []string) []*block {
	out := []*block{b}
	for _, h := range path {
		cur := out[len(out)-1]
		i := slices.IndexFunc(cur.children, func(c *block) bool { return c.text == h })
		if i < 0 {
			break
		}
		out = append(out, cur.children[i])
	}
	return out
}

// existing is the longest prefix of path whose blocks are in the candidate.
func (e *Editor) existing(path []string) []string {
	n := len(blocks(e.text).walk(path)) - 1
	return slices.Clone(path[:n])
}

// remove is `no ARGS`.
func (e *Editor) remove(args []string) error {
	if len(args) == 0 {
		return errors.New("% Incomplete command.")
	}
	tree := blocks(e.text)
	bs := tree.walk(e.path)
	st := e.frames()
	for lvl := len(bs) - 1; lvl >= 0; lvl-- {
		b, md := bs[lvl], st[lvl].mode
		matches, err := e.match(b, md, args)
		if err != nil {
			return err
		}
		if len(matches) == 0 {
			continue
		}
		var kinds []*cmd
		for _, m := range matches {
			c, _, _ := md.find(strings.Fields(m.text))
			if !slices.Contains(kinds, c) {
				kinds = append(kinds, c)
			}
		}
		if len(kinds) > 1 {
			var lines []string
			for _, m := range matches {
				lines = append(lines, m.text)
			}
			return fmt.Errorf("%% Ambiguous: %q matches several commands (%s); give more words", "no "+strings.Join(args, " "), strings.Join(lines, "; "))
		}
		b.children = slices.DeleteFunc(b.children, func(c *block) bool { return slices.Contains(matches, c) })
		var sb strings.Builder
		tree.write(&sb, 0)
		sb.WriteString("end\n")
		cfg, errs, _ := e.scan(sb.String(), 0)
		if len(errs) > 0 {
			return lineError(errs, -1)
		}
		e.text = cfg.Render()
		if lvl < len(e.path) {
			e.path = e.path[:lvl] // a command of an enclosing mode leaves the sub-modes
		}
		e.path = e.existing(e.path)
		return nil
	}
	return fmt.Errorf("%% Nothing to remove: no line in this mode (or the modes around it) starts with %q", strings.Join(args, " "))
}

// match finds the lines of b that `no args` removes.
// Keywords match in any case, names and values exactly.
func (e *Editor) match(b *block, md *mode, args []string) ([]*block, error) {
	if strings.HasPrefix(b.text, "ip access-list ") {
		return e.matchACE(b, args)
	}
	if strings.EqualFold(args[0], "interface") && len(args) > 2 {
		args = []string{args[0], strings.Join(args[1:], "")}
	}
	var out []*block
	for _, c := range b.children {
		w := strings.Fields(c.text)
		if len(args) > len(w) {
			continue
		}
		nkw := 0
		if k, _, _ := md.find(w); k != nil {
			nkw = len(k.kw)
		}
		ok := true
		for i, a := range args {
			ok = ok && (a == w[i] || (i < nkw && strings.EqualFold(a, w[i])))
		}
		if ok {
			out = append(out, c)
		}
	}
	return out, nil
}

// matchACE finds access-list entries: `no SEQ`, or the entry's meaning
// (with or without its sequence number).
func (e *Editor) matchACE(b *block, args []string) ([]*block, error) {
	seqOf := func(t string) string { return strings.Fields(t)[0] }
	rest := func(t string) string { _, r, _ := strings.Cut(t, " "); return r }
	if len(args) == 1 {
		if n, err := strconv.Atoi(args[0]); err == nil {
			var out []*block
			for _, c := range b.children {
				if seqOf(c.text) == strconv.Itoa(n) {
					out = append(out, c)
				}
			}
			return out, nil
		}
	}
	if w := strings.ToLower(args[0]); w != "permit" && w != "deny" && (w[0] < '0' || w[0] > '9') {
		return nil, nil // not an entry: a command of an enclosing mode
	}
	std := strings.HasPrefix(b.text, "ip access-list standard ")
	kind := "extended"
	if std {
		kind = "standard"
	}
	src := "ip access-list " + kind + " no\n " + strings.Join(args, " ") + "\n"
	cfg, errs, _ := e.scan(src, 0)
	if len(errs) > 0 {
		return nil, lineError(errs, 2)
	}
	if len(cfg.ACLs) == 0 || len(cfg.ACLs[0].Entries) != 1 {
		return nil, nil
	}
	want := cfg.ACLs[0].Entries[0].render(std)
	withSeq := args[0][0] >= '0' && args[0][0] <= '9'
	var out []*block
	for _, c := range b.children {
		if (withSeq && c.text == want) || (!withSeq && rest(c.text) == rest(want)) {
			out = append(out, c)
		}
	}
	return out, nil
}
