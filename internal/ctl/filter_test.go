package ctl

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func run(t *testing.T, s *Server, line string) *WireResponse {
	t.Helper()
	return s.Exec(context.Background(), line)
}

// proves: O2
func TestFiltersIncludeExcludeBeginCount(t *testing.T) {
	s := testServer()
	for line, want := range map[string]string{
		"sh cry gd ks mem | include Member ID":            "Group Member ID    : 10.0.0.2    GM Version: 1.0.2\nGroup Member ID    : 10.0.0.3    GM Version: 1.0.1\n",
		"sh cry gd ks mem | i 1\\.0\\.1":                  "Group Member ID    : 10.0.0.3    GM Version: 1.0.1\n",
		"sh cry gd ks mem | include member id":            "", // case-sensitive, like IOS
		"sh cry gd ks mem | inc 0.0.2|0.0.3":              "Group Member ID    : 10.0.0.2    GM Version: 1.0.2\nGroup Member ID    : 10.0.0.3    GM Version: 1.0.1\n",
		"sh cry gd ks mem | exclude ^(\\s|$)":             "Group Member Information :\nNumber of rekeys sent for group G1 : 3\nGroup Member ID    : 10.0.0.2    GM Version: 1.0.2\nGroup Member ID    : 10.0.0.3    GM Version: 1.0.1\n",
		"sh cry gd ks mem | begin 10.0.0.3":               "Group Member ID    : 10.0.0.3    GM Version: 1.0.1\n Group ID          : 1234\n Group Name        : G1\n Rekeys sent       : 3\n",
		"sh cry gd ks mem | count":                        "Number of lines which match regexp = 12\n",
		"sh cry gd ks mem | count Group":                  "Number of lines which match regexp = 7\n",
		"sh cry gd ks mem | section 10.0.0.2":             "Group Member ID    : 10.0.0.2    GM Version: 1.0.2\n Group ID          : 1234\n Group Name        : G1\n Rekeys sent       : 3\n",
		"sh cry gd ks mem | include ID | ex Member":       " Group ID          : 1234\n Group ID          : 1234\n",
		"sh cry gd ks mem | in Member | ex 1.0.1 | count": "Number of lines which match regexp = 2\n",
		"sh cry gd ks mem | b nothing":                    "",
	} {
		r := run(t, s, line)
		if !r.OK {
			t.Errorf("%q: %s", line, r.Error)
			continue
		}
		if r.Text != want {
			t.Errorf("%q:\n got %q\nwant %q", line, r.Text, want)
		}
	}
}

// proves: O2
func TestFilterJSON(t *testing.T) {
	s := testServer()
	r := run(t, s, "sh cry gd ks mem | json")
	var got []member
	if !r.OK || json.Unmarshal([]byte(r.Text), &got) != nil || len(got) != 2 || got[1].Version != "1.0.1" {
		t.Fatalf("%+v", r)
	}
	if !strings.Contains(r.Text, "\n  {\n    \"id\": \"10.0.0.2\",") {
		t.Errorf("not indented:\n%s", r.Text)
	}
	// Data is still there, unfiltered, for programs.
	if !json.Valid(r.Data) {
		t.Errorf("data %s", r.Data)
	}
	// json on a handler without data: {"text": lines}
	r = run(t, s, "show plain | json")
	var txt map[string][]string
	if json.Unmarshal([]byte(r.Text), &txt) != nil || !reflect.DeepEqual(txt["text"], []string{"alpha", "beta", "gamma"}) {
		t.Errorf("%q", r.Text)
	}
	// after a text filter, json shows the filtered lines
	r = run(t, s, "sh cry gd ks mem | include Member ID | json")
	if json.Unmarshal([]byte(r.Text), &txt) != nil || len(txt["text"]) != 2 {
		t.Errorf("%q", r.Text)
	}
	// and filters apply to the JSON text
	r = run(t, s, "sh cry gd ks mem | json | include version")
	if r.Text != "    \"version\": \"1.0.2\"\n    \"version\": \"1.0.1\"\n" {
		t.Errorf("%q", r.Text)
	}
	r = run(t, s, "show plain | include zzz | json")
	if json.Unmarshal([]byte(r.Text), &txt) != nil || txt["text"] == nil || len(txt["text"]) != 0 {
		t.Errorf("%q", r.Text)
	}
}

// proves: O2
func TestFilterErrors(t *testing.T) {
	s := testServer()
	for line, want := range map[string]struct {
		err string
		pos int
	}{
		"show plain | frob x":     {"% Invalid input detected at '^' marker.", 13},
		"show plain | include":    {"% Incomplete command.", -1},
		"show plain | include (":  {"% Invalid regular expression", 21},
		"show plain | json extra": {"% Invalid input detected at '^' marker.", 18},
		"show plain |":            {"% Incomplete command.", -1},
		"| include x":             {"% Invalid input detected at '^' marker.", 0},
	} {
		r := run(t, s, line)
		if r.OK || !strings.HasPrefix(r.Error, want.err) {
			t.Errorf("%q: %+v", line, r)
			continue
		}
		if (r.Pos == nil) != (want.pos < 0) || (r.Pos != nil && *r.Pos != want.pos) {
			t.Errorf("%q: pos %v, want %d", line, r.Pos, want.pos)
		}
	}
}
