package app

import (
	"errors"
	"fmt"

	"github.com/groupvpn/groupvpn/internal/policy"
)

// runConfig implements `groupvpn config check FILE`: parse and validate a
// configuration (docs/config.md) without starting anything. It prints
// "FILE: OK" and a summary of the node's roles, or every error as
// FILE:LINE: reason on stderr. Lines accepted but not used (a pasted IOS
// configuration's) are printed as FILE:LINE: note: ... before "OK".
func runConfig(env *Env, args []string) int {
	if len(args) != 2 || args[0] != "check" {
		fmt.Fprintln(env.Stderr, "usage: groupvpn config check FILE")
		return 2
	}
	file := args[1]
	c, err := policy.Load(file)
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
	fmt.Fprintf(env.Stdout, "%s: OK\n%s\n", file, c.Summary())
	return 0
}
