package dataplane

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// SetProtected keeps the routes into the TUN device in step with the
// policy: removed destinations are deleted, new ones added, kept ones not
// touched (issue 12: the protected destinations change with rekeys).
func TestRoutesSetProtected(t *testing.T) {
	var cmds []string
	r := &Routes{TUN: "gvtun", Mark: 7, Src: netip.MustParseAddr("10.1.1.1"),
		Protected: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.2.0.0/16")},
		IP:        func(args ...string) error { cmds = append(cmds, strings.Join(args, " ")); return nil }}
	if err := r.SetProtected([]netip.Prefix{netip.MustParsePrefix("10.3.0.0/16"), netip.MustParsePrefix("10.1.0.0/16")}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"route replace 10.3.0.0/16 dev gvtun table 1001 src 10.1.1.1",
		"route del 10.2.0.0/16 dev gvtun table 1001",
	}
	if !reflect.DeepEqual(cmds, want) {
		t.Fatalf("ip commands %q, want %q", cmds, want)
	}
	if got := r.Protected; !reflect.DeepEqual(got, []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.3.0.0/16")}) {
		t.Fatalf("Protected %v", got)
	}
	cmds = nil
	if err := r.SetProtected(nil); err != nil || len(cmds) != 2 || len(r.Protected) != 0 {
		t.Fatalf("removing all: %q %v %v", cmds, r.Protected, err)
	}
}

// A policy replace that widens the ACL (10.10.0.0/16 to 10.8.0.0/13) adds
// the wider route before it deletes the narrower one: deleted first, the
// packets between the two commands would follow the main table's default
// route in the clear (bench disruption --netns lost them: the receiving
// GM's clear-packet table dropped them).
// proves: E2 (issue 13: no loss through a policy replace, make before break)
func TestRoutesSetProtectedMakeBeforeBreak(t *testing.T) {
	var cmds []string
	r := &Routes{TUN: "gvtun", Protected: []netip.Prefix{netip.MustParsePrefix("10.10.0.0/16")},
		IP: func(args ...string) error { cmds = append(cmds, strings.Join(args, " ")); return nil }}
	if err := r.SetProtected([]netip.Prefix{netip.MustParsePrefix("10.8.0.0/13")}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"route replace 10.8.0.0/13 dev gvtun table 1001",
		"route del 10.10.0.0/16 dev gvtun table 1001",
	}
	if !reflect.DeepEqual(cmds, want) {
		t.Fatalf("ip commands %q, want %q (the wider route first)", cmds, want)
	}
}
