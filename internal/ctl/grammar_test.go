package ctl

import (
	"context"
	"strings"
	"testing"
)

// testGrammar is two modes of the configuration (docs/config.md notation).
func testGrammar() *Grammar {
	return NewGrammar([][]GrammarCommand{
		{
			{Syntax: "rekey lifetime seconds SECONDS"},
			{Syntax: "rekey algorithm aes {128 | 192 | 256}"},
			{Syntax: "rekey address ipv4 ACL"},
			{Syntax: "sa ipsec SEQ"},
			{Syntax: "address ipv4 A.B.C.D"},
			{Syntax: "set transform-set NAME [NAME ...]"},
			{Syntax: "end"}, {Syntax: "exit"},
		},
		{
			{Syntax: "crypto isakmp key KEY address {A.B.C.D [MASK] | ipv6 PREFIX}"},
			{Syntax: "crypto gdoi group NAME"},
			{Syntax: "hostname NAME"},
		},
	})
}

// proves: O2 (issue 14 item 3: configuration-mode abbreviations: keywords
// expanded by unique prefix, values kept as typed, numbers typed in full,
// the enclosing mode's commands, IOS's errors)
func TestGrammarExpand(t *testing.T) {
	g := testGrammar()
	for in, want := range map[string]string{
		"rek life sec 60":               "rekey lifetime seconds 60",
		"rekey alg aes 256":             "rekey algorithm aes 256",
		"no rek addr ipv ACL1":          "no rekey address ipv4 ACL1",
		"cry isa key K addr 10.0.0.1":   "crypto isakmp key K address 10.0.0.1",
		"cry isa key K addr ipv6 ::/0":  "crypto isakmp key K address ipv6 ::/0",
		"set trans a b c":               "set transform-set a b c",
		"ho R1":                         "hostname R1",
		"rekey lifetime seconds 60 x y": "rekey lifetime seconds 60 x y", // the parser judges extra words
		"rekey lifetime bogus 60":       "rekey lifetime bogus 60",
	} {
		got, err := g.Expand(in)
		if err != nil || got != want {
			t.Errorf("Expand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"rekey a":         `% Ambiguous command:  "rekey a"`,
		"e":               `% Ambiguous command:  "e"`,
		"bogus":           "% Invalid input detected at '^' marker.",
		"no":              "% Incomplete command.",
		"rekey alg aes 1": "", // a number is not abbreviated: left to the parser
	} {
		_, err := g.Expand(in)
		if want == "" {
			if err != nil {
				t.Errorf("Expand(%q): %v", in, err)
			}
			continue
		}
		if err == nil || err.Error() != want {
			t.Errorf("Expand(%q) error %v, want %q", in, err, want)
		}
	}
	if _, err := g.Expand("  bogus"); err == nil || err.(*parseError).pos != 2 {
		t.Errorf("marker: %v", err)
	}
	// An access list's mode: a first word that is no keyword there nor in
	// the enclosing mode is a sequence number.
	acl := NewGrammar([][]GrammarCommand{
		{{Syntax: "[SEQ] {permit | deny} PROTOCOL SOURCE [eq PORT] DESTINATION [eq PORT]"}},
		{{Syntax: "hostname NAME"}},
	})
	for in, want := range map[string]string{
		"10 perm ip any any":   "10 permit ip any any",
		"d udp any any eq 848": "deny udp any any eq 848",
		"ho R1":                "hostname R1",
	} {
		if got, err := acl.Expand(in); err != nil || got != want {
			t.Errorf("acl: Expand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// proves: O2 (issue 14 item 3: ? at any word of a configuration command
// lists the next word's candidates with help)
func TestGrammarComplete(t *testing.T) {
	g := testGrammar()
	words := func(line string) string {
		c, _, err := g.Complete(line)
		if err != nil {
			return err.Error()
		}
		var w []string
		for _, x := range c {
			if x.Help == "" && x.Word != "<cr>" {
				t.Errorf("%q: %q without help", line, x.Word)
			}
			w = append(w, x.Word)
		}
		return strings.Join(w, " ")
	}
	for in, want := range map[string]string{
		"rekey ":                     "address algorithm lifetime",
		"rekey algorithm aes ":       "128 192 256",
		"cry":                        "crypto",
		"crypto ":                    "gdoi isakmp",
		"no rekey l":                 "lifetime",
		"rekey lifetime seconds 60 ": "<cr>",
		"sa ipsec ":                  "SEQ",
	} {
		if got := words(in); got != want {
			t.Errorf("Complete(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzGrammar: no configuration line makes the grammar panic, and an
// expansion only lengthens keywords (values are kept).
func FuzzGrammar(f *testing.F) {
	for _, s := range []string{"rek life sec 60", "no rek addr ipv ACL1", "10 perm ip any any eq 80", "cry isa key K addr ipv6 ::/0", "", "no", "[", "{a|b}", "rekey ?"} {
		f.Add(s)
	}
	g := testGrammar()
	f.Fuzz(func(t *testing.T, line string) {
		if len(line) > 4096 {
			return
		}
		if x, err := g.Expand(line); err == nil && len(strings.Fields(x)) != len(strings.Fields(line)) {
			t.Fatalf("Expand(%q) = %q: words changed", line, x)
		}
		g.Complete(line)
		NewGrammar([][]GrammarCommand{{{Syntax: line}}}).Complete(line)
	})
}

// proves: O2 (issue 14 item 3: `configure ?` offers what IOS offers
// (terminal), not the protocol's configure session)
func TestCompletionHidesProtocolCommands(t *testing.T) {
	s := NewServer(nil)
	s.HandleConfigure(func(context.Context) (ConfigSession, error) { return nil, nil })
	c, _, err := completeCommand(s.commands(), nil, "configure ")
	if err != nil || len(c) != 1 || c[0].Word != "terminal" || c[0].Help == "" {
		t.Errorf("configure ? = %+v, %v", c, err)
	}
}
