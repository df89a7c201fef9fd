package lab

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/version"
)

// proves: O2 — every show command answers on a running key server and
// group member, filters apply, and show running-config prints the
// configuration the node was started from.
func TestShowCommandsOnARunningLab(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := Start(ctx, Options{Members: 2, Port: 21848, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Wait(ctx, &strings.Builder{}, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	gm := l.GMs[0]
	cases := []struct {
		on   string
		cmd  string
		want []string
	}{
		{"ks", "show crypto gdoi", []string{"Group Name               : LAB", "Group Members            : 2", "IPSec SA Number        : 2"}},
		{"ks", "show crypto gdoi ks members | include Member ID", []string{"127.0.2.1", "127.0.2.2"}},
		{"ks", "show crypto gdoi ks members | count", []string{"Number of lines which match regexp"}},
		{"ks", "show running-config | include identity", []string{"identity number 1001"}},
		{"ks", "show crypto isakmp sa", []string{"127.0.1.1"}},
		{"gm", "show crypto gdoi gm", []string{"Registration status   : Registered", "KEK POLICY", "esp-gcm", "esp-aes esp-sha256-hmac"}},
		{"gm", "show crypto ipsec sa | include esp sas", []string{"inbound esp sas", "outbound esp sas"}},
		{"gm", "sh cry ipsec sa | json", []string{`"schema": "groupvpn.show/1"`, `"group": "LAB"`, `"spi": "0x`}},
		{"gm", "show version", []string{"version " + version.Current.String()}},
		{"ks", "show crypto gdoi ks replay", []string{"Counter based Replay", "Replay Window Size           : 64", "Timebased Replay", "Replay Window Size           : 5 secs", "Next TBAR resync rekey in"}},
		{"gm", "show crypto gdoi gm replay", []string{"Counter based Replay", "Timebased Replay", "Replay Value"}},
		{"gm", "show crypto gdoi gm | include Fail-Close|Anti-Replay", []string{"Fail-Close            : Disabled", "Anti-Replay(Time Based) : 5 sec interval", "Anti-Replay(Counter Based) : 64"}},
	}
	for _, c := range cases {
		srv := l.KS.Ctl
		if c.on == "gm" {
			srv = gm.Ctl
		}
		r := srv.Exec(ctx, c.cmd)
		if !r.OK {
			t.Errorf("%s: %s: %s", c.on, c.cmd, r.Error)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(r.Text, w) {
				t.Errorf("%s: %s lacks %q:\n%s", c.on, c.cmd, w, r.Text)
			}
		}
	}
	if r := gm.Ctl.Exec(ctx, "show crypto ipsec sa | json"); strings.Contains(r.Text, `"EncKey": "`) {
		t.Error("| json shows key material")
	}
}
