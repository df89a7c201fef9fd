package lab

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/show"
	"github.com/groupvpn/groupvpn/internal/show/jsoncheck"
)

// proves: O7 (issue 14 item 5: on a running lab, after registrations and
// traffic, every show command of the key server and of a group member
// answers `| json` in the documented schema (snake_case, seconds, RFC 3339
// UTC times, hex SPIs, no empty values); the member's TEKs carry their
// SPIs as 0x hex and the key server lists both members by address)
func TestEveryShowCommandJSONOnALab(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := Start(ctx, Options{Members: 2, Port: 21858, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Wait(ctx, &strings.Builder{}, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	optional := regexp.MustCompile(`\[[^\]]*\]`)
	outputs := map[string]string{}
	for _, node := range []struct {
		name string
		srv  *ctl.Server
	}{{"ks", l.KS.Ctl}, {"gm", l.GMs[0].Ctl}} {
		r := node.srv.Exec(ctx, ctl.CmdHelp)
		var help []ctl.HelpEntry
		if !r.OK || json.Unmarshal(r.Data, &help) != nil {
			t.Fatalf("%s: ?help: %+v", node.name, r)
		}
		n := 0
		for _, h := range help {
			if !strings.HasPrefix(h.Command, "show ") {
				continue
			}
			cmd := strings.Join(strings.Fields(optional.ReplaceAllString(h.Command, "")), " ")
			r := node.srv.Exec(ctx, cmd+" | json")
			if !r.OK {
				if !strings.Contains(r.Error, "not a") { // a role's command on the other role
					t.Errorf("%s: %s | json: %s", node.name, cmd, r.Error)
				}
				continue
			}
			n++
			outputs[node.name+" "+cmd] = r.Text
			for _, e := range jsoncheck.Check([]byte(r.Text), show.Schema) {
				t.Errorf("%s: %s | json: %s\n%s", node.name, cmd, e, r.Text)
			}
		}
		if n < 10 {
			t.Errorf("%s: only %d show commands answered | json", node.name, n)
		}
	}
	var gm show.GMJSON
	if err := json.Unmarshal([]byte(outputs["gm show crypto gdoi gm"]), &gm); err != nil || len(gm.Groups) != 1 {
		t.Fatalf("gm: show crypto gdoi gm | json: %v\n%s", err, outputs["gm show crypto gdoi gm"])
	}
	g := gm.Groups[0]
	if g.RegistrationState != "registered" || len(g.TEKs) == 0 || g.KEK == nil || !regexp.MustCompile(`^0x[0-9a-f]{8}$`).MatchString(g.TEKs[0].SPI) {
		t.Errorf("gm: show crypto gdoi gm | json: %+v", g)
	}
	var members show.KSMembersJSON
	if err := json.Unmarshal([]byte(outputs["ks show crypto gdoi ks members"]), &members); err != nil ||
		len(members.Groups) != 1 || len(members.Groups[0].Members) != 2 {
		t.Errorf("ks: show crypto gdoi ks members | json: %v\n%s", err, outputs["ks show crypto gdoi ks members"])
	}
}
