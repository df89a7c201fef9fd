package ctl

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// The pattern language (see the package comment for the operator's view):
//
//	show crypto gdoi ks members              literal keywords
//	show crypto gdoi group WORD              a placeholder, named after the keyword before it ("group")
//	crypto gdoi ks peer addr=A.B.C.D         a placeholder with an explicit name ("addr")
//	clear crypto gdoi [group WORD] ks members [now]   optional parts, which may nest
//
// Placeholders: WORD (any word), NUMBER (unsigned decimal), A.B.C.D (IPv4
// address), X:X::X (IPv6 address), LINE (the rest of the line, last only).

type elemKind uint8

const (
	kwElem     elemKind = iota // a keyword, matched by any unique prefix
	wordElem                   // WORD
	numberElem                 // NUMBER
	ipv4Elem                   // A.B.C.D
	ipv6Elem                   // X:X::X
	lineElem                   // LINE: the rest of the line
)

var placeholders = map[string]elemKind{
	"WORD":    wordElem,
	"NUMBER":  numberElem,
	"A.B.C.D": ipv4Elem,
	"X:X::X":  ipv6Elem,
	"LINE":    lineElem,
}

// elem is one position of an expanded pattern.
type elem struct {
	kind elemKind
	word string // the keyword, or the placeholder's spelling (WORD, A.B.C.D, ...)
	name string // the Args key of a placeholder
}

// typed reports whether a placeholder accepts fewer words than WORD does;
// typed placeholders win over WORD and LINE at the same position.
func (e elem) typed() bool { return e.kind == numberElem || e.kind == ipv4Elem || e.kind == ipv6Elem }

func (e elem) accepts(tok string) bool {
	switch e.kind {
	case wordElem, lineElem:
		return tok != ""
	case numberElem:
		_, err := strconv.ParseUint(tok, 10, 64)
		return err == nil
	case ipv4Elem:
		a, err := netip.ParseAddr(tok)
		return err == nil && a.Is4()
	case ipv6Elem:
		a, err := netip.ParseAddr(tok)
		return err == nil && a.Is6()
	}
	return false
}

// item is a parsed pattern: a word or an optional sequence.
type item struct {
	elem *elem
	opt  []item
}

const maxVariants = 256

// compilePattern parses a pattern and expands its optional parts into every
// linear variant. Placeholder names default to the keyword before them.
func compilePattern(p string) ([][]elem, error) {
	toks := lexPattern(p)
	items, rest, err := parseItems(toks, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("unbalanced %q", rest[0])
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("empty pattern")
	}
	// Name placeholders after the keyword before them, over the pattern as
	// written, so every variant agrees on the names.
	names := map[string]bool{}
	var last string
	var walk func([]item) error
	walk = func(its []item) error {
		for i := range its {
			if its[i].opt != nil {
				if err := walk(its[i].opt); err != nil {
					return err
				}
				continue
			}
			e := its[i].elem
			if e.kind == kwElem {
				last = e.word
				continue
			}
			if e.name == "" {
				e.name = last
				if e.name == "" {
					e.name = strings.ToLower(e.word)
				}
			}
			if names[e.name] {
				return fmt.Errorf("two placeholders named %q: name them (NAME=%s)", e.name, e.word)
			}
			names[e.name] = true
		}
		return nil
	}
	if err := walk(items); err != nil {
		return nil, err
	}
	variants, err := expand(items)
	if err != nil {
		return nil, err
	}
	for _, v := range variants {
		if len(v) == 0 {
			return nil, fmt.Errorf("a variant has no words")
		}
		for i, e := range v {
			if e.kind == lineElem && i != len(v)-1 {
				return nil, fmt.Errorf("LINE must be last")
			}
		}
	}
	return variants, nil
}

func lexPattern(p string) []string {
	var out []string
	for _, f := range strings.Fields(p) {
		for f != "" {
			i := strings.IndexAny(f, "[]")
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

func parseItems(toks []string, depth int) ([]item, []string, error) {
	var items []item
	for len(toks) > 0 {
		t := toks[0]
		switch t {
		case "]":
			if depth == 0 {
				return nil, toks, nil
			}
			return items, toks, nil
		case "[":
			sub, rest, err := parseItems(toks[1:], depth+1)
			if err != nil {
				return nil, nil, err
			}
			if len(rest) == 0 || rest[0] != "]" {
				return nil, nil, fmt.Errorf("unclosed [")
			}
			if len(sub) == 0 {
				return nil, nil, fmt.Errorf("empty []")
			}
			items = append(items, item{opt: sub})
			toks = rest[1:]
			continue
		}
		e, err := parseWord(t)
		if err != nil {
			return nil, nil, err
		}
		items = append(items, item{elem: e})
		toks = toks[1:]
	}
	return items, nil, nil
}

func parseWord(t string) (*elem, error) {
	name, typ, named := strings.Cut(t, "=")
	if !named {
		typ, name = t, ""
	}
	if k, ok := placeholders[typ]; ok {
		if named && !validKeyword(name) {
			return nil, fmt.Errorf("bad placeholder name %q", name)
		}
		return &elem{kind: k, word: typ, name: name}, nil
	}
	if named || !validKeyword(t) {
		return nil, fmt.Errorf("bad word %q: keywords are lower case (a-z 0-9 - _ .), placeholders WORD NUMBER A.B.C.D X:X::X LINE", t)
	}
	return &elem{kind: kwElem, word: t}, nil
}

func validKeyword(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case i > 0 && (r == '-' || r == '_' || r == '.'):
		default:
			return false
		}
	}
	return true
}

func expand(items []item) ([][]elem, error) {
	out := [][]elem{nil}
	for _, it := range items {
		if it.elem != nil {
			for i := range out {
				out[i] = append(out[i][:len(out[i]):len(out[i])], *it.elem)
			}
			continue
		}
		subs, err := expand(it.opt)
		if err != nil {
			return nil, err
		}
		next := make([][]elem, 0, len(out)*(len(subs)+1))
		for _, v := range out {
			next = append(next, v)
			for _, s := range subs {
				next = append(next, append(v[:len(v):len(v)], s...))
			}
		}
		if len(next) > maxVariants {
			return nil, fmt.Errorf("more than %d variants", maxVariants)
		}
		out = next
	}
	return out, nil
}

// variantKey identifies a variant's shape for conflict detection.
func variantKey(v []elem) string {
	var sb strings.Builder
	for _, e := range v {
		sb.WriteString(e.word)
		sb.WriteByte(' ')
	}
	return sb.String()
}

// token is one word of a command line with its byte offset.
type token struct {
	s   string
	pos int
}

func tokenize(s string, base int) []token {
	var out []token
	i := 0
	for i < len(s) {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		start := i
		for i < len(s) && !isSpace(s[i]) {
			i++
		}
		if i > start {
			out = append(out, token{s[start:i], base + start})
		}
	}
	return out
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\r' || b == '\n' }

// cand is one live variant during matching.
type cand struct {
	cmd *command
	v   []elem
}

// parseError is a command-line error shown IOS style. Pos is the byte
// offset of the '^' marker in the line, or -1.
type parseError struct {
	msg string
	pos int
}

func (e *parseError) Error() string { return e.msg }

const (
	msgInvalid    = "% Invalid input detected at '^' marker."
	msgIncomplete = "% Incomplete command."
)

// ambiguous is IOS's message for a word that abbreviates several keywords,
// to the letter (two spaces after the colon): `% Ambiguous command:  "sh c"`.
// As on IOS the candidates are not listed: `sh c?` lists them.
func ambiguous(typed string) string {
	return `% Ambiguous command:  "` + strings.TrimSpace(typed) + `"`
}

// step narrows the live variants by the token at position i, IOS style:
// an exact keyword wins, then a unique keyword prefix; several prefixes are
// ambiguous; only when no keyword fits do placeholders (typed before WORD).
func step(live []cand, i int, tok token, line string) ([]cand, []cand, error) {
	lower := strings.ToLower(tok.s)
	var exact, prefix, typed, word []cand
	var done []cand // LINE variants, complete with this token
	kws := map[string]bool{}
	seen := false
	for _, c := range live {
		if len(c.v) <= i {
			continue
		}
		seen = true
		e := c.v[i]
		switch {
		case e.kind == kwElem && e.word == lower:
			exact = append(exact, c)
		case e.kind == kwElem && strings.HasPrefix(e.word, lower) && !isNumber(e.word): // numbers are typed in full
			prefix = append(prefix, c)
			kws[e.word] = true
		case e.kind != kwElem && e.typed() && e.accepts(tok.s):
			typed = append(typed, c)
		case e.kind != kwElem && !e.typed() && e.accepts(tok.s):
			word = append(word, c)
		}
	}
	if !seen {
		return nil, nil, &parseError{msgInvalid, tok.pos}
	}
	switch {
	case len(exact) > 0:
		return exact, nil, nil
	case len(kws) == 1:
		return prefix, nil, nil
	case len(kws) > 1:
		return nil, nil, &parseError{ambiguous(line[:tok.pos+len(tok.s)]), -1}
	case len(typed) > 0:
		return typed, nil, nil
	case len(word) > 0:
		var cont []cand
		for _, c := range word {
			if c.v[i].kind == lineElem {
				done = append(done, c)
			} else {
				cont = append(cont, c)
			}
		}
		return cont, done, nil
	}
	return nil, nil, &parseError{msgInvalid, tok.pos}
}

// resolved is the result of matching a command line.
type resolved struct {
	cmd     *command
	v       []elem
	toks    []token
	lineArg string // the LINE placeholder's text
}

// resolve matches the words of line (the command part, without filters)
// against the registered variants.
func resolve(cmds []*command, line string) (*resolved, error) {
	toks := tokenize(line, 0)
	var live []cand
	for _, c := range cmds {
		for _, v := range c.variants {
			live = append(live, cand{c, v})
		}
	}
	var lineDone []cand
	lineAt := -1
	for i, t := range toks {
		next, done, err := step(live, i, t, line)
		if err != nil {
			return nil, err
		}
		if len(done) > 0 && lineDone == nil {
			lineDone, lineAt = done, i
		}
		live = next
		if len(live) == 0 {
			break
		}
	}
	var complete []cand
	for _, c := range live {
		if len(c.v) == len(toks) {
			complete = append(complete, c)
		}
	}
	if len(complete) == 0 && lineDone != nil {
		complete = lineDone
	}
	switch {
	case len(complete) == 1:
		r := &resolved{cmd: complete[0].cmd, v: complete[0].v, toks: toks}
		if n := len(r.v); r.v[n-1].kind == lineElem {
			at := lineAt
			if len(complete[0].v) == len(toks) {
				at = len(toks) - 1
			}
			r.toks = toks[:at+1]
			r.lineArg = strings.TrimSpace(line[toks[at].pos:])
		}
		return r, nil
	case len(complete) > 1:
		return nil, &parseError{ambiguous(line), -1}
	}
	if len(toks) == 0 {
		return nil, &parseError{msgIncomplete, -1}
	}
	for _, c := range live {
		if len(c.v) > len(toks) {
			return nil, &parseError{msgIncomplete, -1}
		}
	}
	// Every live variant is shorter: the first extra word is the error.
	short := 0
	for _, c := range live {
		short = max(short, len(c.v))
	}
	if short < len(toks) {
		return nil, &parseError{msgInvalid, toks[short].pos}
	}
	return nil, &parseError{msgInvalid, toks[len(toks)-1].pos}
}

// bind fills a Request from a resolved command line.
func (r *resolved) bind(req *Request) {
	req.Command = r.cmd.pattern
	req.Args = map[string]string{}
	for i, t := range r.toks {
		e := r.v[i]
		if e.kind == kwElem {
			req.Words = append(req.Words, e.word)
			if _, ok := req.Args[e.word]; !ok {
				req.Args[e.word] = e.word
			}
			continue
		}
		val := t.s
		if e.kind == lineElem {
			val = r.lineArg
		}
		req.Words = append(req.Words, val)
		req.Args[e.name] = val
		req.Params = append(req.Params, Param{Name: e.name, Type: e.word, Value: val})
	}
}

// protocolHelp starts the help of a command of the protocol itself
// (configure session): it works, but ? and TAB do not offer it.
const protocolHelp = "(protocol)"

// Candidate is one possible next word offered by completion.
type Candidate struct {
	Word    string `json:"word"`              // a keyword, a placeholder (WORD, A.B.C.D, ...), "<cr>" or "|"
	Help    string `json:"help,omitempty"`    // what it does
	Keyword bool   `json:"keyword,omitempty"` // Word can be typed as is (TAB completes it)
}

// completeCommand lists what may follow the words of line; the last word
// is the partial one being typed unless line ends in a space.
func completeCommand(cmds []*command, kwHelp map[string]string, line string) (cands []Candidate, partial string, err error) {
	toks := tokenize(line, 0)
	if len(toks) > 0 && !strings.HasSuffix(line, " ") && !strings.HasSuffix(line, "\t") {
		partial = toks[len(toks)-1].s
		toks = toks[:len(toks)-1]
	}
	var live []cand
	for _, c := range cmds {
		for _, v := range c.variants {
			live = append(live, cand{c, v})
		}
	}
	lineDone := false
	for i, t := range toks {
		next, done, err := step(live, i, t, line)
		if err != nil {
			return nil, partial, err
		}
		if len(done) > 0 {
			lineDone = true
		}
		live = next
	}
	pos := len(toks)
	lower := strings.ToLower(partial)
	kws := map[string]map[*command]bool{}
	ends := map[string]string{}          // keyword -> help of a command that ends with it here
	next := map[string]map[string]bool{} // keyword -> the keywords after it
	var path []string                    // the keywords typed so far, in full
	for _, c := range live {
		if len(c.v) > pos {
			for _, e := range c.v[:pos] {
				path = append(path, e.word)
			}
			break
		}
	}
	phs := map[string]string{}
	complete := lineDone
	for _, c := range live {
		if strings.HasPrefix(c.cmd.help, protocolHelp) {
			continue // the protocol's own commands are not the operator's
		}
		if len(c.v) == pos {
			complete = true
			continue
		}
		if len(c.v) < pos {
			continue
		}
		e := c.v[pos]
		if e.kind == kwElem {
			if strings.HasPrefix(e.word, lower) {
				if kws[e.word] == nil {
					kws[e.word] = map[*command]bool{}
					next[e.word] = map[string]bool{}
				}
				kws[e.word][c.cmd] = true
				if len(c.v) == pos+1 {
					ends[e.word] = c.cmd.help
				} else {
					next[e.word][c.v[pos+1].word] = true
				}
			}
			continue
		}
		if partial == "" || e.accepts(partial) {
			phs[e.word] = e.name
		}
	}
	for w, cs := range kws {
		cd := Candidate{Word: w, Keyword: true}
		// Every keyword has help (issue 14 item 3): its command's; the
		// registered help of the keyword path (Server.HandleHelp); the
		// help of the command it ends; else the words that may follow.
		h, ok := kwHelp[strings.Join(append(path[:len(path):len(path)], w), " ")]
		switch {
		case len(cs) == 1:
			for c := range cs {
				cd.Help = c.help
			}
		case ok:
			cd.Help = h
		case ends[w] != "":
			cd.Help = ends[w]
		default:
			ws := make([]string, 0, len(next[w]))
			for n := range next[w] {
				ws = append(ws, n)
			}
			sort.Strings(ws)
			cd.Help = strings.Join(ws, ", ") + " ..."
		}
		cands = append(cands, cd)
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].Word < cands[j].Word })
	var ph []Candidate
	for w, name := range phs {
		ph = append(ph, Candidate{Word: w, Help: name})
	}
	sort.Slice(ph, func(i, j int) bool { return ph[i].Word < ph[j].Word })
	cands = append(cands, ph...)
	if complete && partial == "" {
		cands = append(cands, Candidate{Word: "|", Help: "Output modifiers"}, Candidate{Word: "<cr>"})
	}
	return cands, partial, nil
}
