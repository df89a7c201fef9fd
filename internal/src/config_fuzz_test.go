package src

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// srcErr is the form of every Parse error: FILE:LINE: reason.
var srcErr = regexp.MustCompile(`^f\.conf:([0-9]+): \S`)

// FuzzParseSrcConfig: no subsystem file panics Parse; every error is
// f.conf:LINE: reason with LINE a line of the input; Parse is
// deterministic; what it accepts keeps its invariants (valid names, a
// command unless not-installed, group-only only in a group, requirements
// defined and not itself).
//
// proves: D1 (issue 11 deliver: fuzz target for src.conf)
func FuzzParseSrcConfig(f *testing.F) {
	f.Add(DefaultConfig("/run/groupvpn", "/etc/groupvpn/isakmpd.conf"))
	f.Add(DefaultConfig("/run/a b", "/etc/it's \"here\"/isakmpd.conf"))
	if b, err := os.ReadFile("../../docs/src.conf.example"); err == nil {
		f.Add(string(b))
	} else {
		f.Fatal(err)
	}
	tests, _ := filepath.Glob("*_test.go")
	raw := regexp.MustCompile("(?s)\"((?:[^\"\\\\\n]|\\\\.)*subsystem (?:[^\"\\\\\n]|\\\\.)*)\"")
	for _, file := range tests {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		for _, m := range raw.FindAllStringSubmatch(string(b), -1) {
			if s, err := strconv.Unquote(`"` + m[1] + `"`); err == nil {
				f.Add(s)
			}
		}
	}
	f.Add("subsystem a command x\n" + strings.Repeat("y", maxLine+1) + "\n")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := Parse("f.conf", strings.NewReader(text))
		c2, err2 := Parse("f.conf", strings.NewReader(text))
		if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) || (err == nil && !reflect.DeepEqual(c, c2)) {
			t.Fatal("Parse is not deterministic")
		}
		if err != nil {
			m := srcErr.FindStringSubmatch(err.Error())
			if m == nil {
				t.Fatalf("error without f.conf:LINE: %q", err)
			}
			if n, _ := strconv.Atoi(m[1]); n < 1 || n > strings.Count(text, "\n")+1 {
				t.Fatalf("error names line %d of a %d-line input: %q", n, strings.Count(text, "\n")+1, err)
			}
			return
		}
		for _, s := range c.Subsystems {
			if !validName(s.Name) || s.Group != "" && !validName(s.Group) {
				t.Fatalf("accepted an invalid name: %+v", s)
			}
			if len(s.Command) == 0 && !s.NotInstalled || s.GroupOnly && s.Group == "" || s.Order < 0 {
				t.Fatalf("accepted an incomplete subsystem: %+v", s)
			}
			for _, r := range s.Requires {
				if r == s.Name || c.Lookup(r) == nil {
					t.Fatalf("accepted a bad requirement %q of %s", r, s.Name)
				}
			}
		}
	})
}

// proves: D1 (issue 11 item 3) — a line too long for the scanner is a
// FILE:LINE error like any other.
func TestParseSrcConfigLongLineNamesItsLine(t *testing.T) {
	_, err := Parse("f.conf", strings.NewReader("subsystem a command x\n"+strings.Repeat("y", maxLine+1)+"\n"))
	if err == nil || err.Error() != "f.conf:2: line longer than 1048576 octets" {
		t.Fatalf("Parse: %v", err)
	}
}
