package app

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/daemon"
	"github.com/groupvpn/groupvpn/internal/keystore"
)

// runKey is `groupvpn key`: the key store's commands (crypto key
// generate, zeroize, import, export, show crypto key mypubkey) without a
// running isakmpd, on the store isakmpd would use. A key server's
// configuration names its rekey key, and isakmpd refuses to start without
// it: this is how the first one is made (docs/cli.md, Keys).
//
//	groupvpn key [-keys DIR | -state FILE] [cli flags] [-c CMD]... [CMD WORDS...]
//
// The commands run as in groupvpn cli (the same shell: interactive with a
// terminal, prompts, -c, --yes), on a control server of this process
// listening on a socket in a private temporary directory.
func runKey(env *Env, args []string) int {
	fs := flag.NewFlagSet("key", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "usage: groupvpn key [-keys DIR | -state FILE] [-c CMD]... [--yes | --answer ANSWER...] [CMD WORDS...]\n\n")
		fs.PrintDefaults()
	}
	keysDir := fs.String("keys", "", "the key store `DIR` (isakmpd's -keys)")
	statePath := fs.String("state", "", "isakmpd's state `FILE` (its -state): the key store is keys/ next to it (default "+DefaultStateDir+"/keys)")
	// The rest are groupvpn cli's flags: parsed there.
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if (a == "-keys" || a == "--keys" || a == "-state" || a == "--state") && i+1 < len(args) {
			if err := fs.Parse(args[i : i+2]); err != nil {
				return 2
			}
			i++
			continue
		}
		if a == "-h" || a == "-help" || a == "--help" {
			fs.Usage()
			return 0
		}
		rest = append(rest, a)
	}
	st := keystore.Open(KeyStoreDir(*keysDir, *statePath))
	tmp, err := os.MkdirTemp("", "groupvpn-key-")
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn key: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	sock := filepath.Join(tmp, "key.sock")
	ln, err := ctl.Listen(sock)
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn key: %v\n", err)
		return 1
	}
	srv := daemon.KeyServer(st, nil)
	srv.SetHostname("key-store")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeListener(ctx, ln) }()
	defer func() { cancel(); <-done }()
	return cliWithNotes(env, append([]string{"-s", sock}, rest...), nil)
}
