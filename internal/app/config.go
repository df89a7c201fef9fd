package app

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/groupvpn/groupvpn/internal/daemon"

	"github.com/groupvpn/groupvpn/internal/keystore"

	"github.com/groupvpn/groupvpn/internal/policy"
)

// runConfig implements `groupvpn config check FILE`: parse and validate a
// configuration (docs/config.md) without starting anything. It prints
// "FILE: OK" and a summary of the node's roles, or every error as
// FILE:LINE: reason on stderr. Lines accepted but not used (a pasted IOS
// configuration's) are printed as FILE:LINE: note: ... before "OK".
//
// Rekey keys that no crypto key import line names are looked up in the
// key store isakmpd uses (-keys DIR; default keys/ next to -state FILE,
// /var/lib/groupvpn/keys); where each rekey key was found is printed.
func runConfig(env *Env, args []string) int {
	usage := func() int {
		fmt.Fprintln(env.Stderr, "usage: groupvpn config check FILE\n       groupvpn config check -keys DIR | -state FILE  FILE   (isakmpd's key store: its -keys, or keys/ next to its -state; default "+DefaultStateDir+"/keys)")
		return 2
	}
	if len(args) < 1 || args[0] != "check" {
		return usage()
	}
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	keysDir := fs.String("keys", "", "isakmpd's key store `DIR` (its -keys)")
	statePath := fs.String("state", "", "isakmpd's state `FILE` (its -state): the key store is keys/ next to it")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		return usage()
	}
	file := fs.Arg(0)
	c, err := policy.LoadWith(file, policy.Options{KeyStore: keystore.Open(KeyStoreDir(*keysDir, *statePath))})
	if err != nil {
		var list policy.ErrorList
		if errors.As(err, &list) {
			for _, e := range list {
				fmt.Fprintln(env.Stderr, e)
			}
		} else {
			fmt.Fprintln(env.Stderr, err)
		}
		fmt.Fprintf(env.Stderr, "%s: configuration refused\n", file)
		return 1
	}
	for _, n := range c.Notes {
		fmt.Fprintln(env.Stdout, n)
	}
	for _, k := range c.RekeyKeys() {
		fmt.Fprintf(env.Stdout, "%s: %s\n", file, k)
	}
	if v2 := daemon.LeftToIKEv2d(c); len(v2) > 0 {
		fmt.Fprintf(env.Stdout, "%s: groups left to ikev2d (G-IKEv2), not run by isakmpd: %s\n", file, strings.Join(v2, ", "))
	}
	fmt.Fprintf(env.Stdout, "%s: OK\n%s\n", file, c.Summary())
	return 0
}
