// Package src is the subsystem controller of groupvpn, after AIX's System
// Resource Controller (SPEC D1, D2, D5, D6; seed 000, the AIX procedure for
// refreshing the IKE daemons). srcmstr runs the daemons of the group `ike`
// (tmd, iked, isakmpd, ikev2d) as separate processes and answers the verbs
// startsrc, stopsrc, refresh and lssrc over a unix socket in the runtime
// directory. It knows how each subsystem was started (-s alone or -g with
// its group) and refuses a refresh by the wrong mechanism (D6) instead of
// leaving a daemon inoperative.
package src

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// DefaultFile is the subsystem file srcmstr reads when -f is not given.
const DefaultFile = "/etc/groupvpn/src.conf"

// SelfCommand as the first word of a command means srcmstr's own
// executable, so nothing needs installing besides the one binary.
const SelfCommand = "groupvpn"

// Subsystem is one line of the subsystem file.
type Subsystem struct {
	Name  string
	Group string
	// Order is the position in group start (ascending) and group stop
	// (descending); D2: tmd before isakmpd and ikev2d.
	Order int
	// Requires names subsystems that must be active before this one is
	// started alone, and that cannot be stopped while it is active (D2).
	Requires []string
	// GroupArgs are appended to Command when started with its group (-g):
	// that is how isakmpd learns to use the broker iked (DESIGN §1).
	GroupArgs []string
	// GroupOnly subsystems cannot be started with startsrc -s.
	GroupOnly bool
	// NotInstalled subsystems are skipped by group start; lssrc shows them.
	NotInstalled bool
	// Command is the program and its arguments.
	Command []string
	// Line is where the subsystem was defined, for messages.
	Line int
}

// Config is a parsed subsystem file.
type Config struct {
	File       string
	Subsystems []*Subsystem // in file order
}

// Lookup returns the subsystem called name, or nil.
func (c *Config) Lookup(name string) *Subsystem {
	for _, s := range c.Subsystems {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Members returns the subsystems of group in start order (Order, then file
// order); nil when no subsystem is in that group.
func (c *Config) Members(group string) []*Subsystem {
	var out []*Subsystem
	for _, s := range c.Subsystems {
		if s.Group == group && group != "" {
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Order < out[j].Order })
	return out
}

// LoadConfig reads and parses the subsystem file.
func LoadConfig(file string) (*Config, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("subsystem file: %w", err)
	}
	defer f.Close()
	return Parse(file, f)
}

// maxLine bounds a line of the subsystem file.
const maxLine = 1 << 20

// Parse reads a subsystem file. Errors are reported as FILE:LINE: reason.
//
// Syntax, one subsystem per line, '#' starts a comment:
//
//	subsystem NAME [group G] [order N] [requires NAME[,NAME]] [group-only]
//	          [not-installed] [group-args "ARGS"] [command PROGRAM ARGS...]
//
// command takes the rest of the line; a line without command must be
// not-installed. Words may be quoted with "" or ”.
func Parse(file string, r io.Reader) (*Config, error) {
	c := &Config{File: file}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLine)
	type req struct {
		name string
		line int
	}
	var reqs []req
	n := 1
	for ; sc.Scan(); n++ {
		where := func(format string, a ...any) error {
			return fmt.Errorf("%s:%d: %s", file, n, fmt.Sprintf(format, a...))
		}
		words, err := splitWords(sc.Text())
		if err != nil {
			return nil, where("%v", err)
		}
		if len(words) == 0 {
			continue
		}
		if words[0] != "subsystem" {
			return nil, where("expected 'subsystem NAME ...', found %q", words[0])
		}
		if len(words) < 2 {
			return nil, where("subsystem without a name")
		}
		s := &Subsystem{Name: words[1], Line: n}
		if !validName(s.Name) {
			return nil, where("invalid subsystem name %q (letters, digits, '-', '_')", s.Name)
		}
		if prev := c.Lookup(s.Name); prev != nil {
			return nil, where("subsystem %s already defined at line %d", s.Name, prev.Line)
		}
		seen := map[string]bool{}
		for i := 2; i < len(words); i++ {
			kw := words[i]
			if seen[kw] && kw != "requires" {
				return nil, where("%s given twice", kw)
			}
			seen[kw] = true
			value := func() (string, error) {
				if i+1 >= len(words) {
					return "", where("%s needs a value", kw)
				}
				i++
				return words[i], nil
			}
			switch kw {
			case "group":
				v, err := value()
				if err != nil {
					return nil, err
				}
				if !validName(v) {
					return nil, where("invalid group name %q", v)
				}
				s.Group = v
			case "order":
				v, err := value()
				if err != nil {
					return nil, err
				}
				o, err := strconv.Atoi(v)
				if err != nil || o < 0 {
					return nil, where("order %q is not a number >= 0", v)
				}
				s.Order = o
			case "requires":
				v, err := value()
				if err != nil {
					return nil, err
				}
				for _, name := range strings.Split(v, ",") {
					if name == "" {
						return nil, where("requires: empty subsystem name")
					}
					s.Requires = append(s.Requires, name)
					reqs = append(reqs, req{name, n})
				}
			case "group-args":
				v, err := value()
				if err != nil {
					return nil, err
				}
				if s.GroupArgs, err = splitWords(v); err != nil {
					return nil, where("group-args: %v", err)
				}
			case "group-only":
				s.GroupOnly = true
			case "not-installed":
				s.NotInstalled = true
			case "command":
				s.Command = append([]string(nil), words[i+1:]...)
				if len(s.Command) == 0 {
					return nil, where("command is empty")
				}
				i = len(words)
			default:
				return nil, where("unknown keyword %q (group, order, requires, group-args, group-only, not-installed, command)", kw)
			}
		}
		if len(s.Command) == 0 && !s.NotInstalled {
			return nil, where("subsystem %s has no command (add 'command PROGRAM ...' or 'not-installed')", s.Name)
		}
		if s.GroupOnly && s.Group == "" {
			return nil, where("subsystem %s is group-only but has no group", s.Name)
		}
		c.Subsystems = append(c.Subsystems, s)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%s:%d: line longer than %d octets", file, n, maxLine)
		}
		return nil, fmt.Errorf("%s:%d: %w", file, n, err)
	}
	for _, r := range reqs {
		if c.Lookup(r.name) == nil {
			return nil, fmt.Errorf("%s:%d: requires %s, which is not defined", file, r.line, r.name)
		}
	}
	for _, s := range c.Subsystems {
		for _, r := range s.Requires {
			if r == s.Name {
				return nil, fmt.Errorf("%s:%d: %s requires itself", file, s.Line, s.Name)
			}
		}
	}
	return c, nil
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// splitWords splits a line into words as a shell would for plain words,
// "double" and 'single' quotes; an unquoted '#' starting a word begins a
// comment.
func splitWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\r':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case r == '#' && !inWord:
			return words, nil
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quote")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// quoteWord quotes w for a subsystem file when it needs it.
func quoteWord(w string) string {
	if w != "" && !strings.ContainsAny(w, " \t\"'#") {
		return w
	}
	return `"` + w + `"`
}

// DefaultConfig returns the subsystem file srcmstr uses when none is given
// (groupvpn srcmstr -isakmpd-conf FILE): the group ike of SPEC D1 with its
// sockets under rundir. It is the text of docs/src.conf.example.
func DefaultConfig(rundir, isakmpdConf string) string {
	sock := func(name string) string { return quoteWord(filepath.Join(rundir, name+".sock")) }
	// group-args is one word that is split again: quote the path inside it
	// only when it needs quoting.
	iked := `"-iked ` + filepath.Join(rundir, "iked.sock") + `"`
	if q := quoteWord(filepath.Join(rundir, "iked.sock")); q != filepath.Join(rundir, "iked.sock") {
		iked = `'-iked ` + q + `'`
	}
	var b strings.Builder
	b.WriteString("# groupvpn subsystems (SPEC D1): the group ike, started with startsrc -g ike.\n")
	b.WriteString("# 'groupvpn' as the first word of a command is srcmstr's own executable.\n")
	fmt.Fprintf(&b, "subsystem tmd     group ike order 1 command groupvpn tmd -socket %s\n", sock("tmd"))
	fmt.Fprintf(&b, "subsystem iked    group ike order 2 group-only command groupvpn iked -socket %s\n", sock("iked"))
	fmt.Fprintf(&b, "subsystem isakmpd group ike order 3 requires tmd group-args %s command groupvpn isakmpd -f %s -tmd %s\n",
		iked, quoteWord(isakmpdConf), sock("tmd"))
	b.WriteString("subsystem ikev2d  group ike order 3 requires tmd not-installed\n")
	return b.String()
}
