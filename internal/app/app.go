// Package app implements the groupvpn command line: one binary whose first
// argument names the command (DESIGN.md §1). cmd/groupvpn only calls Main.
package app

import (
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
)

// command is one subcommand.
type command struct {
	summary string
	run     func(env *Env, args []string) int
}

// Env is what a command may touch; tests substitute buffers.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

func commands() map[string]command {
	return map[string]command{
		"lab":        {"run a key server and N group members in one process on loopback, with ESP traffic between them (--members N, --cli)", runLab},
		"decode":     {"decode ISAKMP/GDOI messages from hex or a raw datagram file", runDecode},
		"bench":      {"measure a scenario beside its ceiling (codec, mainmode, daemons, register, rekey, removal, scale)", runBench},
		"loadgen":    {"play many group members against a key server from one process and one UDP socket (issue 18; -ks, -members)", runLoadgen},
		"config":     {"validate a configuration file (config check FILE)", runConfig},
		"cli":        {"operator CLI: groupvpn cli [-s SOCKET] [-c CMD]", runCLI},
		"key":        {"the key store without a running isakmpd: groupvpn key [-keys DIR] -c 'crypto key generate rsa label X modulus 2048'", runKey},
		"isakmpd":    {"run the IKEv1 + GDOI daemon (key server and/or group member): isakmpd -f FILE", runIsakmpd},
		"ikev2d":     {"run the IKEv2 + G-IKEv2 daemon (RFC 9838 key server and/or group member): ikev2d -f FILE", runIkev2d},
		"tmd":        {"run the tunnel manager: the SA database the IKE daemons install into (tmd [-socket PATH])", runTmd},
		"iked":       {"run the IKE broker: owns UDP 848/500/4500 on every address for the group ike (iked [-socket PATH])", runIked},
		"srcmstr":    {"subsystem controller of the group ike (SPEC D1): srcmstr [-f FILE] [-rundir DIR]", runSrcmstr},
		"startsrc":   {"start a subsystem or group: startsrc -s NAME | -g GROUP", runStartsrc},
		"stopsrc":    {"stop a subsystem or group: stopsrc -s NAME | -g GROUP", runStopsrc},
		"refresh":    {"refresh a subsystem or group (SIGHUP, waits for the outcome): refresh -s NAME | -g GROUP", runRefresh},
		"lssrc":      {"status of subsystems: lssrc [-l] -s NAME | -g GROUP | -a", runLssrc},
		"version":    {"the build (version, revision, Go) and the GDOI software version spoken", runVersion},
		"completion": {"print a bash completion script: groupvpn completion bash", runCompletion},
		"help":       {"list the commands", nil},
	}
}

// Args returns the arguments of Main from the process's argv: argv[1:],
// or all of argv with its base name when the binary was run through a
// link named after an SRC verb (`make install` links startsrc, stopsrc,
// refresh, lssrc and srcmstr to groupvpn).
func Args(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	if name := filepath.Base(argv[0]); SRCVerb(name) {
		return append([]string{name}, argv[1:]...)
	}
	return argv[1:]
}

// Main runs the command named by args[0] and returns the exit status.
func Main(env *Env, args []string) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(env.Stdout, cmds)
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "groupvpn: unknown command %q; run 'groupvpn help' for the list\n", args[0])
		return 2
	}
	return c.run(env, args[1:])
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	var sb strings.Builder
	sb.WriteString("groupvpn: open-source GDOI (RFC 6407) group key management\n\nusage: groupvpn COMMAND [ARGS]\n\n")
	for _, n := range names {
		fmt.Fprintf(&sb, "  %-10s %s\n", n, cmds[n].summary)
	}
	io.WriteString(w, sb.String())
}
