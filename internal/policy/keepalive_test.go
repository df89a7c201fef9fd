package policy

import (
	"strings"
	"testing"
)

// proves: O1 (issue 14 item 2: keepalive) — every IOS form of crypto
// isakmp keepalive is parsed into the model and rendered back as show
// running-config writes it (retry only when not 2, on-demand never),
// and the rendering parses to the same setting.
func TestKeepaliveParseRender(t *testing.T) {
	for _, c := range []struct {
		in, out string
		want    Keepalive
	}{
		{"crypto isakmp keepalive 10", "crypto isakmp keepalive 10", Keepalive{Seconds: 10}},
		{"crypto isakmp keepalive 10 2", "crypto isakmp keepalive 10", Keepalive{Seconds: 10}},
		{"crypto isakmp keepalive 30 5", "crypto isakmp keepalive 30 5", Keepalive{Seconds: 30, Retry: 5}},
		{"crypto isakmp keepalive 15 periodic", "crypto isakmp keepalive 15 periodic", Keepalive{Seconds: 15, Periodic: true}},
		{"crypto isakmp keepalive 10 3 periodic", "crypto isakmp keepalive 10 3 periodic", Keepalive{Seconds: 10, Retry: 3, Periodic: true}},
		{"crypto isakmp keepalive 3600 60 on-demand", "crypto isakmp keepalive 3600 60", Keepalive{Seconds: 3600, Retry: 60}},
		{"crypto isakmp keepalive 10 on-demand", "crypto isakmp keepalive 10", Keepalive{Seconds: 10}},
	} {
		cfg := mustParse(t, c.in+"\n")
		c.want.Line = 1
		if cfg.Keepalive != c.want {
			t.Errorf("%q: %+v, want %+v", c.in, cfg.Keepalive, c.want)
		}
		if len(cfg.Notes) != 0 {
			t.Errorf("%q noted: %v", c.in, cfg.Notes)
		}
		out := cfg.Render()
		if !strings.Contains(out, "\n"+c.out+"\n") || strings.Count(out, "keepalive") != 1 {
			t.Errorf("%q rendered as:\n%s", c.in, out)
		}
		back := mustParse(t, out)
		if k := back.Keepalive; k.Seconds != c.want.Seconds || k.Retry != c.want.Retry || k.Periodic != c.want.Periodic {
			t.Errorf("%q: round trip %+v", c.in, back.Keepalive)
		}
	}
	if out := mustParse(t, "hostname h\n").Render(); strings.Contains(out, "keepalive") {
		t.Errorf("keepalive rendered when not configured:\n%s", out)
	}
	mustFail(t, "crypto isakmp keepalive 10 1\n", `1: crypto isakmp keepalive retry 1 is out of range (accepted: 2-60)`)
	mustFail(t, "crypto isakmp keepalive 10 3 periodic now\n", `1: "crypto isakmp keepalive 10 3 periodic now": wrong number of arguments; usage: crypto isakmp keepalive SECONDS [RETRY] [periodic | on-demand]`)
}

// proves: O1 (issue 14 item 2: keepalive) — configure terminal sets,
// replaces (the last one wins, as on IOS) and removes the keepalive.
func TestKeepaliveConfigureTerminal(t *testing.T) {
	e, _ := newEditor(t)
	apply(t, e, [2]string{"crypto isakmp keepalive 10 3 periodic", "(config)"})
	apply(t, e, [2]string{"crypto isakmp keepalive 20", "(config)"})
	c, err := e.Candidate()
	if err != nil {
		t.Fatal(err)
	}
	if k := c.Keepalive; k.Seconds != 20 || k.Retry != 0 || k.Periodic || strings.Count(e.Text(), "keepalive") != 1 {
		t.Fatalf("after replace: %+v\n%s", k, e.Text())
	}
	apply(t, e, [2]string{"no crypto isakmp keepalive", "(config)"})
	if c, err = e.Candidate(); err != nil || c.Keepalive.Seconds != 0 || strings.Contains(e.Text(), "keepalive") {
		t.Fatalf("after no: %+v %v\n%s", c.Keepalive, err, e.Text())
	}
}
