package ctl

import (
	"fmt"
	"regexp"
	"strings"
)

// Output filters, applied by the server to a successful reply so that every
// client gets them: `| include RE`, `| exclude RE`, `| begin RE`,
// `| section RE`, `| count [RE]`, `| json`. They chain left to right. A
// filter starts at a '|' that begins the line or follows a space, so a
// regular expression such as `a|b` stays whole; the regular expression is
// the rest of the stage (it may contain spaces) and is case-sensitive (Go
// RE2 syntax), like IOS.

type filterKind string

const (
	fInclude filterKind = "include"
	fExclude filterKind = "exclude"
	fBegin   filterKind = "begin"
	fSection filterKind = "section"
	fCount   filterKind = "count"
	fJSON    filterKind = "json"
)

var filterHelp = []Candidate{
	{Word: string(fBegin), Help: "Begin with the line that matches", Keyword: true},
	{Word: string(fCount), Help: "Count number of lines which match regexp", Keyword: true},
	{Word: string(fExclude), Help: "Exclude lines that match", Keyword: true},
	{Word: string(fInclude), Help: "Include lines that match", Keyword: true},
	{Word: string(fJSON), Help: "Machine-readable output (the command's data as JSON)", Keyword: true},
	{Word: string(fSection), Help: "Filter a section of output", Keyword: true},
}

type filter struct {
	kind filterKind
	re   *regexp.Regexp
}

// stage is the text of one filter stage with its offset in the line.
type stage struct {
	text string
	pos  int
}

// splitFilters splits a line into the command part and its filter stages.
func splitFilters(line string) (string, []stage) {
	var cuts []int
	for i := 0; i < len(line); i++ {
		if line[i] == '|' && (i == 0 || isSpace(line[i-1])) {
			cuts = append(cuts, i)
		}
	}
	if len(cuts) == 0 {
		return line, nil
	}
	stages := make([]stage, len(cuts))
	for k, c := range cuts {
		end := len(line)
		if k+1 < len(cuts) {
			end = cuts[k+1]
		}
		stages[k] = stage{line[c+1 : end], c + 1}
	}
	return line[:cuts[0]], stages
}

// parseFilters compiles filter stages.
func parseFilters(stages []stage) ([]filter, error) {
	var out []filter
	for _, st := range stages {
		toks := tokenize(st.text, st.pos)
		if len(toks) == 0 {
			return nil, &parseError{msgIncomplete, -1}
		}
		kind, err := filterName(toks[0])
		if err != nil {
			return nil, err
		}
		f := filter{kind: kind}
		rest := strings.TrimSpace(st.text[toks[0].pos-st.pos+len(toks[0].s):])
		switch kind {
		case fJSON:
			if len(toks) > 1 {
				return nil, &parseError{msgInvalid, toks[1].pos}
			}
		case fCount:
			if rest == "" {
				break
			}
			fallthrough
		default:
			if rest == "" {
				return nil, &parseError{msgIncomplete, -1}
			}
			re, err := regexp.Compile(rest)
			if err != nil {
				return nil, &parseError{fmt.Sprintf("%% Invalid regular expression %q: %v", rest, err), toks[1].pos}
			}
			f.re = re
		}
		out = append(out, f)
	}
	return out, nil
}

func filterName(t token) (filterKind, error) {
	lower := strings.ToLower(t.s)
	var found []filterKind
	for _, c := range filterHelp {
		if c.Word == lower {
			return filterKind(c.Word), nil
		}
		if strings.HasPrefix(c.Word, lower) {
			found = append(found, filterKind(c.Word))
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", &parseError{msgInvalid, t.pos}
	}
	return "", &parseError{ambiguous(t.s), t.pos}
}

// completeFilter lists what may follow in the last filter stage.
func completeFilter(st stage) ([]Candidate, string) {
	toks := tokenize(st.text, 0)
	trailing := strings.HasSuffix(st.text, " ") || strings.HasSuffix(st.text, "\t")
	if len(toks) == 0 || (len(toks) == 1 && !trailing) {
		partial := ""
		if len(toks) == 1 {
			partial = toks[0].s
		}
		var out []Candidate
		for _, c := range filterHelp {
			if strings.HasPrefix(c.Word, strings.ToLower(partial)) {
				out = append(out, c)
			}
		}
		return out, partial
	}
	partial := ""
	if !trailing {
		partial = toks[len(toks)-1].s
	}
	kind, err := filterName(toks[0])
	if err != nil {
		return nil, partial
	}
	switch {
	case kind == fJSON:
		if len(toks) == 1 {
			return []Candidate{{Word: "|", Help: "Output modifiers"}, {Word: "<cr>"}}, partial
		}
		return nil, partial
	case len(toks) == 1 && kind == fCount:
		return []Candidate{{Word: "LINE", Help: "Regular Expression"}, {Word: "|", Help: "Output modifiers"}, {Word: "<cr>"}}, partial
	case len(toks) == 1:
		return []Candidate{{Word: "LINE", Help: "Regular Expression"}}, partial
	}
	return []Candidate{{Word: "LINE", Help: "Regular Expression"}, {Word: "<cr>"}}, partial
}
