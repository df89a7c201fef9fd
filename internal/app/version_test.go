package app

import (
	"runtime/debug"
	"strings"
	"testing"
)

// proves: O1 (issue 14 item 8: `groupvpn version` names the build, its
// revision and the GDOI software version; the completion lists every command)
func TestVersionAndCompletion(t *testing.T) {
	got := versionText(func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-12-06T05:00:00Z"}, {Key: "vcs.modified", Value: "true"},
		}}, true
	})
	want := "groupvpn v1.2.3 (revision 0123456789ab, 2026-12-06T05:00:00Z, modified), built with go1.26.0\nGDOI software version 1.0.3 (GET VPN major.minor.mini)\n"
	if got != want {
		t.Fatalf("version:\n%q\nwant\n%q", got, want)
	}
	if code, out, _ := run(t, "", "version"); code != 0 || !strings.HasPrefix(out, "groupvpn ") {
		t.Fatalf("groupvpn version: %d %q", code, out)
	}
	code, out, _ := run(t, "", "completion", "bash")
	if code != 0 {
		t.Fatalf("completion: %d", code)
	}
	for name := range commands() {
		if !strings.Contains(out, " "+name+" ") && !strings.Contains(out, " "+name+"\"") && !strings.Contains(out, "\""+name+" ") {
			t.Errorf("completion lacks %s", name)
		}
	}
}
