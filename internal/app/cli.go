package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/groupvpn/groupvpn/internal/ctl"
)

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ", ") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// runCLI is `groupvpn cli`: the operator's shell on a daemon's control
// socket (internal/ctl, docs/cli.md).
//
//	groupvpn cli [-s SOCKET] [-c CMD]... [--yes | --answer A...] [CMD WORDS...]
//
// With -c (or a command as arguments) it runs the commands and exits 1 at
// the first failure; with a terminal on stdin it is interactive; otherwise
// it reads commands from stdin, one per line. Only the interactive mode
// ever asks a question.
func runCLI(env *Env, args []string) int { return cliWithNotes(env, args, nil) }

// cliWithNotes is runCLI showing notes while the operator works
// (ctl.Shell.Notes): `groupvpn lab --cli`'s live traffic status.
func cliWithNotes(env *Env, args []string, notes <-chan string) int {
	fs := flag.NewFlagSet("cli", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "usage: groupvpn cli [-s SOCKET] [-c CMD]... [--yes | --answer ANSWER...] [CMD WORDS...]\n\n")
		fs.PrintDefaults()
	}
	socket := fs.String("s", ctl.DefaultSocket(), "control `SOCKET` ($GROUPVPN_SOCKET, else "+ctl.DefaultSocketPath+")")
	var cmds, answers listFlag
	fs.Var(&cmds, "c", "run `CMD` and exit (repeatable; never prompts)")
	fs.Var(&answers, "answer", "answer the next confirmation prompt with `ANSWER` (repeatable, in order)")
	yes := fs.Bool("yes", false, "answer yes to confirmation prompts (after any --answer)")
	timeout := fs.Duration("timeout", 0, "give up on a command after `DURATION` (0: wait)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		cmds = append(cmds, strings.Join(fs.Args(), " "))
	}

	client, err := ctl.Dial(*socket)
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn cli: %v\n", err)
		return 1
	}
	defer client.Close()
	sh := ctl.NewConfigShell(&ctl.Shell{Client: client, Out: env.Stdout, Err: env.Stderr, Answers: answers, Yes: *yes, Timeout: *timeout, Notes: notes})
	ctx := context.Background()

	// Commands and scripts run on one connection, in order, following
	// configure terminal; ending in configuration mode (or failing in it)
	// commits nothing and exits 1 (Close).
	if len(cmds) > 0 {
		for _, c := range cmds {
			if err := sh.RunCommand(ctx, c); err != nil {
				sh.Close(ctx)
				return 1
			}
		}
		if sh.Close(ctx) != nil {
			return 1
		}
		return 0
	}
	if in, ok := env.Stdin.(*os.File); ok && term.IsTerminal(int(in.Fd())) {
		return interactive(env, sh, in)
	}
	if err := sh.RunScript(ctx, env.Stdin); err != nil {
		sh.Close(ctx)
		return 1
	}
	if sh.Close(ctx) != nil {
		return 1
	}
	return 0
}

// interactive puts the terminal in raw mode for the shell and restores it.
func interactive(env *Env, sh *ctl.ConfigShell, in *os.File) int {
	fd := int(in.Fd())
	old, err := term.MakeRaw(fd)
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn cli: terminal: %v\n", err)
		return 1
	}
	defer term.Restore(fd, old)
	w, h := 0, 0
	if out, ok := env.Stdout.(*os.File); ok {
		w, h, _ = term.GetSize(int(out.Fd()))
	}
	rw := struct {
		io.Reader
		io.Writer
	}{in, env.Stdout}
	if err := sh.Interactive(context.Background(), rw, w, h); err != nil {
		term.Restore(fd, old)
		fmt.Fprintf(env.Stderr, "groupvpn cli: %v\n", err)
		return 1
	}
	return 0
}
