package daemon_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/show"
	"github.com/groupvpn/groupvpn/internal/show/jsoncheck"
)

// proves: O7, O2 (issue 14 item 5: every show command a daemon registers
// has a `| json` golden file in internal/show/testdata/json, and its live
// output on a running key server (real control socket) follows the
// schema: "schema": "groupvpn.show/1", its command, snake_case keys,
// seconds, RFC 3339 UTC times, hex SPIs, absent rather than empty) — a
// show command added without a JSON view, or answering with an internal
// struct, fails here.
func TestEveryShowCommandHasAJSONView(t *testing.T) {
	_, client := seedDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Let the key server make its keys, so that the groups have TEKs.
	time.Sleep(200 * time.Millisecond)
	r, err := client.Do(ctx, &ctl.WireRequest{Cmd: ctl.CmdHelp})
	if err != nil || !r.OK {
		t.Fatalf("?help: %v %+v", err, r)
	}
	var help []ctl.HelpEntry
	if err := json.Unmarshal(r.Data, &help); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, h := range help {
		if !strings.HasPrefix(h.Command, "show ") {
			continue
		}
		n++
		golden := filepath.Join("..", "show", "testdata", "json", strings.ReplaceAll(h.Command, " ", "_")+".json")
		if _, err := os.Stat(golden); err != nil {
			t.Errorf("%q has no `| json` golden (%v): map its state in internal/show/json.go, add it to jsonCommands in internal/show/json_test.go (go test -update) and document it in docs/json.md", h.Command, err)
		}
		r, err := client.Run(ctx, h.Command+" | json")
		if err != nil {
			t.Fatalf("%s | json: %v", h.Command, err)
		}
		if !r.OK {
			// A GM's command on this key server: refused with the reason.
			if !strings.Contains(r.Error, "not a group member") {
				t.Errorf("%s | json: %s", h.Command, r.Error)
			}
			continue
		}
		for _, e := range jsoncheck.Check([]byte(r.Text), show.Schema) {
			t.Errorf("%s | json: %s\n%s", h.Command, e, r.Text)
		}
		var head struct{ Command string }
		if json.Unmarshal([]byte(r.Text), &head) != nil || head.Command != h.Command {
			t.Errorf("%s | json: command %q", h.Command, head.Command)
		}
	}
	t.Logf("%d show commands checked", n)
	if n < 15 {
		t.Errorf("only %d show commands registered", n)
	}
}
