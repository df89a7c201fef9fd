package app

import (
	"flag"
	"fmt"
)

// runLab will start a KS and N GMs on loopback. Registration, the key
// server and the group members do not exist yet, so it says exactly that
// and what it will show, instead of pretending.
func runLab(env *Env, args []string) int {
	fs := flag.NewFlagSet("lab", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	members := fs.Int("members", 8, "number of group members")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fmt.Fprintf(env.Stdout, `groupvpn lab: not available yet.

When registration lands (issue 4) this command will, with no root and no setup:
  1. start one key server and %d group members in this process, each on its own
     127.0.0.0/8 address, over real UDP (an unprivileged port instead of 848);
  2. show each GM registering with GROUPKEY-PULL over an IKEv1 phase-1 SA;
  3. print the KS member table and every GM's KEK and TEKs.

What works today is the wire codec for ISAKMP, IKEv1 and GDOI. Try:
  go run ./cmd/groupvpn bench codec
  go run ./cmd/groupvpn decode < isakmp/testdata/pull2.hex
`, *members)
	return 0
}
