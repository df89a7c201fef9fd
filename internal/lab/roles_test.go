package lab

import (
	"context"
	"strings"
	"testing"
	"time"
)

// proves: O2 (issue 14 item 3: a GM answers KS-only commands by saying it
// is not a key server, and a KS answers GM-only commands by saying it is not
// a group member, instead of an empty output; both are errors, so a
// script's `groupvpn cli -c` exits 1)
func TestRoleOnlyCommandsSayWhy(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := Start(ctx, Options{Members: 1, Port: 23871, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Wait(ctx, &strings.Builder{}, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	gm := l.GMs[0].Ctl
	for _, cmd := range []string{
		"show crypto gdoi ks members", "sh cry gd ks mem", "show crypto gdoi ks counters",
		"show crypto gdoi ks replay", "show crypto gdoi ks policy",
		"crypto gdoi ks rekey", "clear crypto gdoi ks members",
	} {
		r := gm.Exec(ctx, cmd)
		if r.OK || r.Error != "% This device is not a key server for any group (no crypto gdoi group has server local)" {
			t.Errorf("GM: %s: ok=%v error %q text %q", cmd, r.OK, r.Error, r.Text)
		}
	}
	for _, cmd := range []string{"show crypto gdoi gm", "show crypto gdoi gm counters", "show crypto gdoi gm replay"} {
		r := l.KS.Ctl.Exec(ctx, cmd)
		if r.OK || r.Error != "% This device is not a group member of any group (no crypto gdoi group has server address ipv4)" {
			t.Errorf("KS: %s: ok=%v error %q text %q", cmd, r.OK, r.Error, r.Text)
		}
	}
	// The roles' own commands still answer.
	for _, c := range []struct{ on, cmd string }{{"ks", "show crypto gdoi ks members"}, {"gm", "show crypto gdoi gm"}} {
		srv := l.KS.Ctl
		if c.on == "gm" {
			srv = gm
		}
		if r := srv.Exec(ctx, c.cmd); !r.OK || r.Text == "" {
			t.Errorf("%s: %s: ok=%v %q", c.on, c.cmd, r.OK, r.Error)
		}
	}
}
