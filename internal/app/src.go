package app

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/groupvpn/groupvpn/internal/rundir"
	"github.com/groupvpn/groupvpn/internal/sdnotify"
	"github.com/groupvpn/groupvpn/internal/src"
)

// SRCVerb reports whether name (the base name of argv[0], or the first
// argument) is one of the subsystem controller's commands, so that the
// binary invoked through a link named startsrc behaves as
// `groupvpn startsrc` (SPEC D1, DESIGN §1).
func SRCVerb(name string) bool {
	switch name {
	case "srcmstr", src.VerbStart, src.VerbStop, src.VerbRefresh, src.VerbLssrc:
		return true
	}
	return false
}

// runSrcmstr runs the subsystem controller (SPEC D1, D2, D5, D6):
// groupvpn srcmstr [-f FILE | -isakmpd-conf FILE] [-rundir DIR].
func runSrcmstr(env *Env, args []string) int {
	fs := flag.NewFlagSet("srcmstr", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	file := fs.String("f", "", "subsystem `FILE` (default "+src.DefaultFile+"; docs/src.conf.example)")
	isakmpdConf := fs.String("isakmpd-conf", "", "without -f: use the built-in subsystem table, isakmpd reading `FILE`")
	dir := fs.String("rundir", rundir.Dir(), "runtime `DIR` (srcmstr.sock, NAME.log, srcmstr.state)")
	readyTimeout := fs.Duration("timeout", 20*time.Second, "how long startsrc and refresh wait for a daemon's answer")
	stopTimeout := fs.Duration("stop-timeout", 10*time.Second, "how long stopsrc waits after SIGTERM before SIGKILL")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 || (*file != "" && *isakmpdConf != "") {
		fmt.Fprintln(env.Stderr, "usage: groupvpn srcmstr [-f FILE | -isakmpd-conf FILE] [-rundir DIR] [-timeout D] [-stop-timeout D]")
		return 2
	}
	var cfg *src.Config
	var err error
	switch {
	case *isakmpdConf != "":
		name := "(built-in subsystem table)"
		cfg, err = src.Parse(name, strings.NewReader(src.DefaultConfig(*dir, *isakmpdConf)))
	case *file != "":
		cfg, err = src.LoadConfig(*file)
	default:
		cfg, err = src.LoadConfig(src.DefaultFile)
		if errors.Is(err, os.ErrNotExist) {
			err = fmt.Errorf("%w (give -f FILE, or -isakmpd-conf FILE for the built-in table)", err)
		}
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn srcmstr: %v\n", err)
		return 1
	}
	logger := slog.New(slog.NewTextHandler(env.Stderr, nil))
	s, err := src.NewServer(src.Options{
		Rundir: *dir, Config: cfg, Logger: logger,
		ReadyTimeout: *readyTimeout, RefreshTimeout: *readyTimeout, StopTimeout: *stopTimeout,
	})
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn %v\n", err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	go func() {
		<-sig
		logger.Info("srcmstr: exiting; the subsystems keep running and the next srcmstr adopts them")
		s.Close(false)
	}()
	logger.Info("srcmstr: listening", "socket", src.SocketPath(*dir), "subsystems", cfg.File)
	// The control socket listens (requests queue until Serve accepts):
	// tell systemd (Type=notify), so the unit's ExecStartPost `startsrc -g
	// ike` runs against a controller that answers. The daemons srcmstr
	// starts must not inherit the socket.
	if sock := os.Getenv("NOTIFY_SOCKET"); sock != "" {
		os.Unsetenv("NOTIFY_SOCKET")
		if _, err := sdnotify.Notify(sock, sdnotify.Ready); err != nil {
			logger.Warn("srcmstr: systemd readiness", "err", err)
		}
	}
	if err := s.Serve(); err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn %v\n", err)
		return 1
	}
	return 0
}

func runStartsrc(env *Env, args []string) int { return runSRCVerb(env, src.VerbStart, args) }
func runStopsrc(env *Env, args []string) int  { return runSRCVerb(env, src.VerbStop, args) }
func runRefresh(env *Env, args []string) int  { return runSRCVerb(env, src.VerbRefresh, args) }
func runLssrc(env *Env, args []string) int    { return runSRCVerb(env, src.VerbLssrc, args) }

// runSRCVerb is the client side of startsrc, stopsrc, refresh and lssrc:
// flags as on AIX (-s NAME, -g GROUP, lssrc also -a and -l).
func runSRCVerb(env *Env, verb string, args []string) int {
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	sub := fs.String("s", "", "subsystem `NAME`")
	group := fs.String("g", "", "`GROUP` of subsystems")
	dir := fs.String("rundir", rundir.Dir(), "runtime `DIR` where srcmstr.sock is")
	var all, long *bool
	if verb == src.VerbLssrc {
		all = fs.Bool("a", false, "all subsystems")
		long = fs.Bool("l", false, "long format")
	}
	usage := func() int {
		if verb == src.VerbLssrc {
			fmt.Fprintln(env.Stderr, "usage: lssrc [-l] -s NAME | -g GROUP | -a [-rundir DIR]")
		} else {
			fmt.Fprintf(env.Stderr, "usage: %s -s NAME | -g GROUP [-rundir DIR]\n", verb)
		}
		return 2
	}
	if err := fs.Parse(args); err != nil {
		return usage()
	}
	req := src.Request{Verb: verb, Subsystem: *sub, Group: *group}
	if all != nil {
		req.All, req.Long = *all, *long
	}
	n := 0
	for _, b := range []bool{req.Subsystem != "", req.Group != "", req.All} {
		if b {
			n++
		}
	}
	if fs.NArg() != 0 || n != 1 {
		return usage()
	}
	resp, err := src.Call(*dir, req)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", verb, err)
		return 1
	}
	fmt.Fprint(env.Stdout, resp.Stdout)
	fmt.Fprint(env.Stderr, resp.Stderr)
	return resp.Exit
}
