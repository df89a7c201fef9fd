package app

import (
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/groupvpn/groupvpn/isakmp"
)

// runDecode prints the structure of ISAKMP messages given as hex arguments,
// as hex on standard input (one message per line), or with -raw FILE as one
// binary datagram.
func runDecode(env *Env, args []string) int {
	fs := flag.NewFlagSet("decode", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	raw := fs.String("raw", "", "read one binary datagram from `FILE`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var inputs [][]byte
	switch {
	case *raw != "":
		b, err := os.ReadFile(*raw)
		if err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn decode: %v\n", err)
			return 1
		}
		inputs = append(inputs, b)
	default:
		texts := fs.Args()
		if len(texts) == 0 {
			all, err := io.ReadAll(env.Stdin)
			if err != nil {
				fmt.Fprintf(env.Stderr, "groupvpn decode: read stdin: %v\n", err)
				return 1
			}
			texts = strings.Split(string(all), "\n")
		}
		for i, s := range texts {
			s = strings.Map(func(r rune) rune {
				if strings.ContainsRune(" \t\r:", r) {
					return -1
				}
				return r
			}, s)
			if s == "" {
				continue
			}
			b, err := hex.DecodeString(s)
			if err != nil {
				fmt.Fprintf(env.Stderr, "groupvpn decode: input %d is not hex: %v\n", i+1, err)
				return 1
			}
			inputs = append(inputs, b)
		}
	}
	status := 0
	for i, b := range inputs {
		m, err := isakmp.ParseMessage(b)
		if err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn decode: message %d (%d octets): %v\n", i+1, len(b), err)
			status = 1
			continue
		}
		isakmp.Dump(env.Stdout, m)
	}
	return status
}
