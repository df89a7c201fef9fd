package ctl

import (
	"fmt"
	"strings"
)

// Grammar gives configuration mode what EXEC mode has (issue 14 item 3):
// keywords abbreviated to any unique prefix, IOS's errors, and `?`/TAB at
// any word with help. It is built from command syntaxes in the notation of
// docs/config.md:
//
//	crypto isakmp key KEY address {A.B.C.D [MASK] | ipv6 PREFIX}
//	set transform-set NAME [NAME ...]
//
// lower-case words are keywords, anything else (NAME, A.B.C.D, 14...) a
// value, [ ] optional, { | } a choice, "..." repeats the value before it.
// Levels are the modes, innermost first: a line is matched in the innermost
// mode that knows its first word, as IOS does in a sub-mode.
//
// Matching is lenient past the first word: a word no syntax foresees ends
// the expansion and the rest goes as typed to the configuration parser,
// which says what is wrong with it (the grammar only knows the shapes).
type Grammar struct {
	levels [][]*command
}

// GrammarCommand is one command of a mode: its syntax and what it does.
type GrammarCommand struct {
	Syntax string
	Help   string
}

// NewGrammar builds a grammar from the commands of each mode, innermost
// first. A syntax that cannot be read is skipped (it is a programming
// error that TestGrammar... of the daemon catches by listing every mode).
func NewGrammar(levels [][]GrammarCommand) *Grammar {
	g := &Grammar{}
	for _, lv := range levels {
		seen := map[string]bool{}
		var cmds []*command
		for _, c := range lv {
			if seen[c.Syntax] {
				continue
			}
			seen[c.Syntax] = true
			vs, err := syntaxVariants(c.Syntax)
			if err != nil || len(vs) == 0 {
				continue
			}
			help := c.Help
			if help == "" {
				help = c.Syntax
			}
			cmds = append(cmds, &command{pattern: c.Syntax, help: help, variants: vs})
		}
		g.levels = append(g.levels, cmds)
	}
	return g
}

// Check returns an error for a syntax the grammar cannot read (for tests).
func (g *Grammar) Check(syntax string) error {
	_, err := syntaxVariants(syntax)
	return err
}

// Expand returns line with every keyword in full ("sa ip 1" -> "sa ipsec
// 1", "no prof p" -> "no profile p"), values as typed. An abbreviation of
// several keywords is IOS's `% Ambiguous command:  "LINE"`; a first word
// that is no command of the mode (nor of an enclosing one) is `% Invalid
// input detected at '^' marker.` with the marker's position (an error
// *parseError: Server reports its pos).
func (g *Grammar) Expand(line string) (string, error) {
	toks := tokenize(line, 0)
	if len(toks) == 0 {
		return line, nil
	}
	start := 0
	out := make([]string, len(toks))
	for i, t := range toks {
		out[i] = t.s
	}
	if strings.EqualFold(toks[0].s, "no") {
		start = 1
		out[0] = "no"
		if len(toks) == 1 {
			return line, &parseError{msgIncomplete, -1}
		}
	}
	// The first word is looked up as a keyword in each mode, innermost
	// first; only when no mode has it as a keyword may it be a value
	// (an access-list entry's sequence number).
	var lastErr error
	for _, kwFirst := range []bool{true, false} {
		for _, cmds := range g.levels {
			exp, err := expandIn(cmds, line, toks[start:], kwFirst)
			if err == nil {
				copy(out[start:], exp)
				return strings.Join(out, " "), nil
			}
			var pe *parseError
			if asParseError(err, &pe) && pe.msg != msgInvalid {
				return line, err // ambiguous: IOS does not look further
			}
			if lastErr == nil {
				lastErr = err
			}
		}
	}
	if lastErr == nil {
		lastErr = &parseError{msgInvalid, toks[start].pos}
	}
	return line, lastErr
}

func asParseError(err error, pe **parseError) bool {
	p, ok := err.(*parseError)
	if ok {
		*pe = p
	}
	return ok
}

// expandIn expands toks by the commands of one mode; an error when the
// first word fits none of them, or a word is ambiguous.
func expandIn(cmds []*command, line string, toks []token, kwFirst bool) ([]string, error) {
	var live []cand
	for _, c := range cmds {
		for _, v := range c.variants {
			live = append(live, cand{c, v})
		}
	}
	out := make([]string, len(toks))
	for i, t := range toks {
		out[i] = t.s
	}
	for i, t := range toks {
		next, _, err := step(live, i, t, line)
		if err != nil {
			var pe *parseError
			if i == 0 || (asParseError(err, &pe) && pe.msg != msgInvalid) {
				return nil, err
			}
			break // lenient: the parser judges the rest
		}
		if len(next) > 0 && next[0].v[i].kind == kwElem {
			out[i] = next[0].v[i].word
		} else if i == 0 && kwFirst {
			return nil, &parseError{msgInvalid, t.pos}
		}
		if len(next) == 0 {
			break
		}
		live = next
	}
	return out, nil
}

// Complete lists what may come at the end of line (the partial last word,
// or the next word if line ends in a space), with help, IOS style. The
// first word's candidates are the innermost mode's commands; after `no`,
// the same.
func (g *Grammar) Complete(line string) ([]Candidate, string, error) {
	if len(g.levels) == 0 {
		return nil, "", nil
	}
	rest := line
	toks := tokenize(line, 0)
	ends := strings.HasSuffix(line, " ") || strings.HasSuffix(line, "\t")
	if len(toks) > 0 && strings.EqualFold(toks[0].s, "no") && (len(toks) > 1 || ends) {
		rest = strings.TrimLeft(line[toks[0].pos+len(toks[0].s):], " \t")
		toks = toks[1:]
	}
	// The mode that knows the first word: the innermost mode's commands
	// are listed first; a first word only an enclosing mode knows is
	// completed from it.
	cmds := g.levels[0]
	if len(toks) > 1 || (len(toks) == 1 && ends) {
		for _, lv := range g.levels {
			if _, err := expandIn(lv, rest, tokenize(rest, 0)[:1], true); err == nil {
				cmds = lv
				break
			}
		}
	} else if len(toks) == 1 {
		for _, lv := range g.levels {
			if c, _, err := completeCommand(lv, nil, rest); err == nil && len(c) > 0 {
				cmds = lv
				break
			}
		}
	}
	cands, partial, err := completeCommand(cmds, nil, rest)
	if err != nil {
		return nil, partial, err
	}
	// completeCommand offers output filters after a complete command:
	// configuration lines have none.
	out := cands[:0]
	for _, c := range cands {
		if c.Word != "|" {
			out = append(out, c)
		}
	}
	return out, partial, nil
}

// syntaxVariants reads a syntax into the linear variants of the pattern
// language: keywords, values (WORD named after the syntax, for ?'s help),
// and a repeated value as LINE.
func syntaxVariants(syntax string) ([][]elem, error) {
	toks := lexSyntax(syntax)
	seq, rest, err := parseSyntaxSeq(toks)
	if err != nil {
		return nil, err
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("syntax %q: unbalanced %q", syntax, rest[0])
	}
	vs := seq.expand(syntax)
	if len(vs) > maxVariants {
		return nil, fmt.Errorf("syntax %q: more than %d variants", syntax, maxVariants)
	}
	var out [][]elem
	for _, v := range vs {
		if len(v) == 0 {
			continue
		}
		// "..." makes the value before it the rest of the line.
		var w []elem
		for _, e := range v {
			if e.word == "..." {
				if len(w) > 0 && w[len(w)-1].kind != kwElem {
					w[len(w)-1].kind = lineElem
				}
				continue
			}
			w = append(w, e)
		}
		for i, e := range w {
			if e.kind == lineElem && i != len(w)-1 {
				w = w[:i+1]
				break
			}
		}
		out = append(out, w)
	}
	return out, nil
}

func lexSyntax(s string) []string {
	var out []string
	for _, f := range strings.Fields(s) {
		for f != "" {
			i := strings.IndexAny(f, "[]{}|")
			switch {
			case i < 0:
				out = append(out, f)
				f = ""
			case i == 0:
				out = append(out, f[:1])
				f = f[1:]
			default:
				out = append(out, f[:i])
				f = f[i:]
			}
		}
	}
	return out
}

// synNode is a parsed syntax: a word, an optional sequence, or a choice.
type synNode struct {
	word   string
	opt    *synSeq
	choice []*synSeq
}

type synSeq struct{ nodes []synNode }

func parseSyntaxSeq(toks []string) (*synSeq, []string, error) {
	s := &synSeq{}
	for len(toks) > 0 {
		switch t := toks[0]; t {
		case "]", "}", "|":
			return s, toks, nil
		case "[":
			sub, rest, err := parseSyntaxSeq(toks[1:])
			if err != nil {
				return nil, nil, err
			}
			if len(rest) == 0 || rest[0] != "]" {
				// [a | b] is a choice that may be left out.
				alts := []*synSeq{sub}
				for len(rest) > 0 && rest[0] == "|" {
					var alt *synSeq
					alt, rest, err = parseSyntaxSeq(rest[1:])
					if err != nil {
						return nil, nil, err
					}
					alts = append(alts, alt)
				}
				if len(rest) == 0 || rest[0] != "]" {
					return nil, nil, fmt.Errorf("unclosed [")
				}
				s.nodes = append(s.nodes, synNode{opt: &synSeq{nodes: []synNode{{choice: alts}}}})
			} else {
				s.nodes = append(s.nodes, synNode{opt: sub})
			}
			toks = rest[1:]
		case "{":
			var alts []*synSeq
			rest := toks[1:]
			for {
				alt, r, err := parseSyntaxSeq(rest)
				if err != nil {
					return nil, nil, err
				}
				alts = append(alts, alt)
				if len(r) == 0 {
					return nil, nil, fmt.Errorf("unclosed {")
				}
				if r[0] == "}" {
					rest = r[1:]
					break
				}
				if r[0] != "|" {
					return nil, nil, fmt.Errorf("unexpected %q in { }", r[0])
				}
				rest = r[1:]
			}
			s.nodes = append(s.nodes, synNode{choice: alts})
			toks = rest
		default:
			s.nodes = append(s.nodes, synNode{word: t})
			toks = toks[1:]
		}
	}
	return s, nil, nil
}

func (s *synSeq) expand(syntax string) [][]elem {
	out := [][]elem{nil}
	for _, n := range s.nodes {
		var alts [][]elem
		switch {
		case n.opt != nil:
			alts = append([][]elem{nil}, n.opt.expand(syntax)...)
		case n.choice != nil:
			for _, c := range n.choice {
				alts = append(alts, c.expand(syntax)...)
			}
		default:
			e := elem{kind: wordElem, word: n.word, name: syntax}
			if n.word != "..." && validKeyword(n.word) && !isNumber(n.word) {
				e = elem{kind: kwElem, word: n.word}
			} else if isNumber(n.word) {
				// A number among choices (group {14 | 15}) is a value
				// typed in full, shown by ? as is.
				e = elem{kind: kwElem, word: n.word}
			}
			alts = [][]elem{{e}}
		}
		next := make([][]elem, 0, len(out)*len(alts))
		for _, v := range out {
			for _, a := range alts {
				next = append(next, append(v[:len(v):len(v)], a...))
			}
		}
		if len(next) > maxVariants {
			return next
		}
		out = next
	}
	return out
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
