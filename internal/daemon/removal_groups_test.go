package daemon_test

import (
	"context"
	"strings"
	"testing"

	"github.com/groupvpn/groupvpn/internal/ctl"
)

// proves: R1 (`clear crypto gdoi ks members` on a key server of two
// groups asks about each group before it removes any: answered yes, yes,
// each group gets exactly one removal (its rekey sequence number moves
// once); answered yes, no, only the first is removed. ctl runs the
// handler again from the start after each answer, so removing a group
// between two questions removed it again on every later answer)
func TestRemovalAsksEveryGroupFirst(t *testing.T) {
	ctx := context.Background()
	second := strings.Replace(seedKS[strings.Index(seedKS, "crypto gdoi group GET"):strings.Index(seedKS, "end\n")],
		"crypto gdoi group GET\n identity number 1111", "crypto gdoi group GET2\n identity number 2222", 1)
	src := strings.Replace(seedKS, "end\n", second+"end\n", 1)
	for _, answers := range [][]string{{"yes", "yes"}, {"yes", "no"}} {
		d, c := runningConfigKS(t, src)
		seq := func() map[string]uint32 {
			t.Helper()
			s, err := d.Node.State(ctx)
			if err != nil {
				t.Fatal(err)
			}
			m := map[string]uint32{}
			for _, g := range s.KS {
				m[g.Name] = g.Seq
			}
			return m
		}
		before := seq()
		if len(before) != 2 {
			t.Fatalf("groups %v, want GET and GET2", before)
		}
		r, err := c.Run(ctx, "clear crypto gdoi ks members")
		if err != nil || r.Token == "" {
			t.Fatalf("first question: %v %+v", err, r)
		}
		for i, a := range answers {
			r, err = c.Do(ctx, &ctl.WireRequest{V: ctl.Version, Cmd: "clear crypto gdoi ks members", Token: r.Token, Answer: a})
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 && r.Token == "" {
				t.Fatalf("answer %q to the first group: no question about the second: %+v", a, r)
			}
		}
		if r.Token != "" || !r.OK {
			t.Fatalf("after %v: %+v", answers, r)
		}
		after := seq()
		want := map[string]uint32{"GET": 1, "GET2": 1}
		if answers[1] == "no" {
			want["GET2"] = 0
		}
		for g, w := range want {
			if got := after[g] - before[g]; got != w {
				t.Errorf("answers %v: group %s sequence number moved by %d, want %d", answers, g, got, w)
			}
		}
		if strings.Count(r.Text, "Sending GM-Removal message to group") != int(want["GET"]+want["GET2"]) {
			t.Errorf("answers %v: %q", answers, r.Text)
		}
	}
}
