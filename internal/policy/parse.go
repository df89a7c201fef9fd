package policy

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/groupvpn/groupvpn/internal/version"
)

// MaxConfigFile bounds what Load reads: a configuration of thousands of
// groups is a few hundred kilobytes.
const MaxConfigFile = 8 << 20

// Load reads and parses the configuration file at path; key and
// certificate paths in it are relative to its directory.
func Load(path string) (*Config, error) { return LoadWith(path, Options{}) }

// LoadWith is Load with options (the daemon's key store).
func LoadWith(path string, o Options) (*Config, error) {
	src, err := readFile(path, MaxConfigFile, false)
	if err != nil {
		return nil, ErrorList{{File: path, Msg: fmt.Sprintf("cannot read: %v", errorsUnwrapPath(err))}}
	}
	return ParseWith(path, src, o)
}

func errorsUnwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// Parse parses a configuration named name (used in messages; relative key
// and certificate paths are resolved from its directory). On any problem
// it returns a nil Config and an ErrorList of every problem found, up to
// MaxErrors.
func Parse(name string, src []byte) (*Config, error) { return ParseWith(name, src, Options{}) }

// ParseWith is Parse with options (the daemon's key store).
func ParseWith(name string, src []byte, o Options) (*Config, error) {
	p := newParser(name, filepath.Dir(name))
	p.cfg.opts = o
	p.run(strings.Split(string(src), "\n"), 0, true)
	if len(p.errs) == 0 {
		sort.SliceStable(p.cfg.Notes, func(i, j int) bool { return p.cfg.Notes[i].Line < p.cfg.Notes[j].Line })
		return p.cfg, nil
	}
	sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
	if len(p.errs) > MaxErrors {
		last := p.errs[MaxErrors]
		p.errs = append(p.errs[:MaxErrors:MaxErrors], &Error{File: name, Line: last.Line, Msg: fmt.Sprintf("too many errors (more than %d); fix these and check again", MaxErrors)})
	}
	return nil, p.errs
}

func newParser(file, dir string) *parser {
	p := &parser{cfg: &Config{File: file, Dir: dir, Identity: IdentityAddress}}
	p.m = buildModes()
	p.stack = []frame{{mode: p.m.global}}
	return p
}

// run parses lines (1-based line numbers) and, when resolve is set and
// there are not too many errors, resolves references. It returns the mode
// stack as it was after line at (0: after the last line).
//
// No input may panic the parser; every command checks its arguments. As a
// last line of defence, a panic is recovered here into an "internal error"
// at the line being parsed, so that a bug is a refused configuration
// (`config check`, a refused reload) and never a dead daemon.
func (p *parser) run(lines []string, at int, resolve bool) (stack []frame) {
	defer func() {
		if r := recover(); r != nil {
			p.errorf("internal error while parsing %q: %v; the configuration is refused (please report this)", p.text, r)
			stack = p.stack[:1]
		}
	}()
	for i, raw := range lines {
		if len(p.errs) > MaxErrors {
			break
		}
		p.line = i + 1
		p.text = strings.TrimSpace(strings.TrimSuffix(raw, "\r"))
		indented := raw != "" && (raw[0] == ' ' || raw[0] == '\t')
		switch {
		case p.text == "" || p.text[0] == '!':
		case p.skipBlock && indented:
			// inside a block groupvpn does not use (line vty, router, ...): noted at its header
		default:
			p.skipBlock = false
			p.dispatch(strings.Fields(p.text))
		}
		if p.line == at {
			stack = slices.Clone(p.stack)
		}
	}
	if stack == nil {
		stack = p.stack
	}
	if resolve && len(p.errs) <= MaxErrors {
		p.line, p.text = 0, ""
		p.resolve()
	}
	return stack
}

type parser struct {
	cfg   *Config
	m     *modes
	stack []frame
	errs  ErrorList
	line  int
	text  string // the current line, trimmed

	// skipBlock: the last unindented line opened an IOS block groupvpn
	// does not use; its indented lines are skipped (noted once, at the header).
	skipBlock bool
	// generated: labels of `crypto key generate ... label X` lines, for the
	// reason given when `rekey authentication mypubkey` names one.
	generated map[string]int
}

type frame struct {
	mode *mode
	obj  any
}

// mode is an IOS configuration mode: the commands valid in it.
type mode struct {
	name string
	cmds []*cmd
}

// cmd is one command: its keywords, its syntax for messages and
// docs/config.md, how many arguments follow the keywords (max -1: any),
// an optional extra matcher, and what it does.
type cmd struct {
	kw       []string
	syntax   string
	min, max int
	match    func(args []string) bool
	run      func(p *parser, obj any, args []string)
	enters   bool // enters a sub-mode: run even with bad arguments (args nil)
	hidden   bool // accepted from pasted IOS configurations, not offered by Commands
	weak     bool // matches only when no enclosing mode has the command (interface's catch-all ip, no)
}

func (m *mode) find(words []string) (c *cmd, matched int, incomplete *cmd) {
	for _, k := range m.cmds {
		n := 0
		for n < len(k.kw) && n < len(words) && strings.EqualFold(k.kw[n], words[n]) {
			n++
		}
		if n == len(k.kw) && (k.match == nil || k.match(words[n:])) {
			if c == nil || len(k.kw) > len(c.kw) {
				c = k
			}
			continue
		}
		if n == len(words) && n < len(k.kw) && incomplete == nil {
			incomplete = k
		}
		if n > matched {
			matched = n
		}
	}
	return c, matched, incomplete
}

func (p *parser) dispatch(words []string) {
	switch {
	case len(words) == 1 && strings.EqualFold(words[0], "end"):
		p.stack = p.stack[:1]
		return
	case len(words) == 1 && strings.EqualFold(words[0], "exit"):
		if len(p.stack) > 1 {
			p.stack = p.stack[:len(p.stack)-1]
		}
		return
	}
	best := 0
	var incomplete *cmd
	for i := len(p.stack) - 1; i >= 0; i-- {
		f := p.stack[i]
		c, n, inc := f.mode.find(words)
		if c != nil && c.weak && p.enclosingHas(i, words) {
			continue
		}
		if c != nil {
			p.stack = p.stack[:i+1]
			args := words[len(c.kw):]
			if len(args) < c.min || (c.max >= 0 && len(args) > c.max) {
				p.errorf("%q: wrong number of arguments; usage: %s", p.text, c.syntax)
				if c.enters {
					c.run(p, f.obj, nil) // so its sub-commands do not cascade into errors
				}
				return
			}
			c.run(p, f.obj, args)
			return
		}
		if n > best {
			best = n
		}
		if inc != nil && incomplete == nil {
			incomplete = inc
		}
	}
	top := p.stack[len(p.stack)-1].mode.name
	if incomplete != nil {
		p.errorf("incomplete command %q in %s mode; usage: %s", strings.Join(words, " "), top, incomplete.syntax)
		return
	}
	n := min(best+1, len(words))
	if best < len(words) {
		if s := p.suggest(words[:best], words[best]); s != "" {
			p.errorf("unknown command %q in %s mode; did you mean %q?", strings.Join(words[:n], " "), top, strings.Join(append(slices.Clone(words[:best]), s), " "))
			return
		}
	}
	p.errorf("unknown command %q in %s mode", strings.Join(words[:n], " "), top)
}

// suggest returns the keyword that may follow the keywords prefix in a
// command of the current modes closest to word, when it is a likely typo
// (edit distance at most 2, and less than half the word), or "".
func (p *parser) suggest(prefix []string, word string) string {
	word = strings.ToLower(word)
	if len(word) > 64 {
		return ""
	}
	best, bestD := "", 3
	try := func(k string) {
		if d := editDistance(word, k); d < bestD && 2*d < len(word) {
			best, bestD = k, d
		}
	}
	for i := len(p.stack) - 1; i >= 0; i-- {
	cmds:
		for _, c := range p.stack[i].mode.cmds {
			if len(c.kw) <= len(prefix) {
				continue
			}
			for j, w := range prefix {
				if !strings.EqualFold(c.kw[j], w) {
					continue cmds
				}
			}
			try(c.kw[len(prefix)])
		}
	}
	if len(prefix) == 0 {
		try("end")
		try("exit")
	}
	return best
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// notef records that the current line is accepted but not used.
func (p *parser) notef(format string, args ...any) {
	p.cfg.Notes = append(p.cfg.Notes, &Error{File: p.cfg.File, Line: p.line, Msg: "note: " + fmt.Sprintf(format, args...)})
}

// weak marks c as matching only where no enclosing mode has the command.
func weak(c *cmd) *cmd {
	c.weak = true
	return c
}

// unused is a hidden command of a pasted IOS configuration that groupvpn
// accepts and notes: keywords kw, any arguments, why it is not used; block
// when its indented lines follow (line vty 0 4, router ospf 1).
func unused(kw string, why string, block bool) *cmd {
	return &cmd{kw: strings.Fields(kw), syntax: kw + " ...", min: 0, max: -1, hidden: true,
		run: func(p *parser, _ any, a []string) {
			p.notef("%q not used by groupvpn (%s)", p.text, why)
			p.skipBlock = block
		}}
}

// enclosingHas reports whether a mode below stack frame i has a command
// for words.
func (p *parser) enclosingHas(i int, words []string) bool {
	for j := i - 1; j >= 0; j-- {
		if c, _, _ := p.stack[j].mode.find(words); c != nil {
			return true
		}
	}
	return false
}

func (p *parser) push(m *mode, obj any) { p.stack = append(p.stack, frame{mode: m, obj: obj}) }

func (p *parser) errorf(format string, args ...any) { p.errAt(p.line, format, args...) }

func (p *parser) errAt(line int, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.cfg.File, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// rest returns the current line after its first n words, as written.
func (p *parser) rest(n int) string {
	s := p.text
	for range n {
		s = strings.TrimLeft(s, " \t")
		i := strings.IndexAny(s, " \t")
		if i < 0 {
			return ""
		}
		s = s[i:]
	}
	return strings.TrimSpace(s)
}

// num parses a decimal in [lo, hi]; what names it in messages.
func (p *parser) num(s, what string, lo, hi int64) (int64, bool) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		p.errorf("%s %q is not a number (accepted: %d-%d)", what, s, lo, hi)
		return 0, false
	}
	if v < lo || v > hi {
		p.errorf("%s %d is out of range (accepted: %d-%d)", what, v, lo, hi)
		return 0, false
	}
	return v, true
}

// choice returns s lowercased if it is one of opts.
func (p *parser) choice(s, what string, opts ...string) (string, bool) {
	for _, o := range opts {
		if strings.EqualFold(s, o) {
			return o, true
		}
	}
	p.errorf("%s %q is not supported (accepted: %s)", what, s, strings.Join(opts, ", "))
	return "", false
}

func (p *parser) keyword(s, want, usage string) bool {
	if strings.EqualFold(s, want) {
		return true
	}
	p.errorf("%q: expected %q where %q is; usage: %s", p.text, want, s, usage)
	return false
}

func (p *parser) ipv4(s, what string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		p.errorf("%s %q is not an IPv4 address", what, s)
		return netip.Addr{}, false
	}
	return a, true
}

func seconds(n int64) time.Duration { return time.Duration(n) * time.Second }

// modes is the command table; buildModes makes a fresh one per Parse.
type modes struct {
	global, isakmp, transform, profile, aclExt, aclStd, group, server, sa, cmap, iface, failClose, redundancy *mode

	ikev2Proposal, ikev2Policy, ikev2Keyring, ikev2Peer, ikev2Profile *mode // parse_ikev2.go
}

func buildModes() *modes {
	m := &modes{
		global:     &mode{name: "global configuration"},
		isakmp:     &mode{name: "crypto isakmp policy"},
		transform:  &mode{name: "crypto ipsec transform-set"},
		profile:    &mode{name: "crypto ipsec profile"},
		aclExt:     &mode{name: "ip access-list extended"},
		aclStd:     &mode{name: "ip access-list standard"},
		group:      &mode{name: "crypto gdoi group"},
		server:     &mode{name: "crypto gdoi group server local"},
		sa:         &mode{name: "crypto gdoi group server local sa ipsec"},
		cmap:       &mode{name: "crypto map"},
		failClose:  &mode{name: "crypto map fail-close"},
		redundancy: &mode{name: "redundancy"},
		iface:      &mode{name: "interface"},
	}
	c := func(syntax string, min, max int, run func(p *parser, obj any, a []string)) *cmd {
		var kw []string
		for _, w := range strings.Fields(syntax) {
			if w != strings.ToLower(w) || strings.ContainsAny(w, "[{|") {
				break
			}
			kw = append(kw, w)
		}
		return &cmd{kw: kw, syntax: syntax, min: min, max: max, run: run}
	}
	// ce is c for a command that enters a sub-mode.
	ce := func(syntax string, min, max int, run func(p *parser, obj any, a []string)) *cmd {
		k := c(syntax, min, max, run)
		k.enters = true
		return k
	}
	// cn is c with only the first n words as keywords.
	cn := func(n int, syntax string, min, max int, run func(p *parser, obj any, a []string)) *cmd {
		k := c(syntax, min, max, run)
		k.kw = k.kw[:n]
		return k
	}
	m.global.cmds = []*cmd{
		c("hostname NAME", 1, 1, (*parser).hostname),
		c("groupvpn version MAJOR.MINOR.MINI", 1, 1, (*parser).version),
		c("logging host {A.B.C.D | ipv6 ADDRESS} [transport udp [port PORT]]", 1, 6, (*parser).loggingHost),
		{kw: []string{"logging"}, syntax: "logging A.B.C.D", min: 1, max: 1, // IOS's older form of logging host
			match: func(a []string) bool {
				_, err := netip.ParseAddr(a[0])
				return len(a) == 1 && err == nil && strings.Contains(a[0], ".")
			},
			run: (*parser).loggingHost},
		c("logging buffered [SIZE] [LEVEL]", 0, 2, (*parser).loggingBuffered),
		c("logging trap LEVEL", 1, 1, (*parser).loggingTrap),
		c("logging facility FACILITY", 1, 1, (*parser).loggingFacility),
		ce("crypto isakmp policy PRIORITY", 1, 1, func(p *parser, _ any, a []string) { p.isakmpPolicy(m, a) }),
		c("crypto isakmp key KEY address {A.B.C.D [MASK] | ipv6 PREFIX}", 3, 4, (*parser).isakmpKey),
		c("crypto isakmp identity {address | dn | hostname}", 1, 1, (*parser).isakmpIdentity),
		c("crypto key import {rsa | ec} LABEL file PATH", 4, 4, (*parser).keyImport),
		c("crypto pki certificate file PATH", 1, 1, (*parser).pkiCert),
		c("crypto pki ca file PATH", 1, 1, (*parser).pkiCA),
		c("crypto pki key file PATH", 1, 1, (*parser).pkiKey),
		ce("crypto ipsec transform-set NAME TRANSFORM [TRANSFORM [TRANSFORM]]", 2, 7, func(p *parser, _ any, a []string) { p.transformSet(m, a) }),
		ce("crypto ipsec profile NAME", 1, 1, func(p *parser, _ any, a []string) { p.profile(m, a) }),
		ce("ip access-list extended NAME", 1, 1, func(p *parser, _ any, a []string) { p.acl(m, false, a) }),
		ce("ip access-list standard NAME", 1, 1, func(p *parser, _ any, a []string) { p.acl(m, true, a) }),
		ce("crypto gdoi group NAME", 1, 1, func(p *parser, _ any, a []string) { p.group(m, a) }),
		{kw: []string{"crypto", "map"}, syntax: "crypto map NAME gdoi fail-close", min: 3, max: 3,
			match: func(a []string) bool {
				return len(a) == 3 && strings.EqualFold(a[1], "gdoi") && strings.EqualFold(a[2], "fail-close")
			},
			run: func(p *parser, _ any, a []string) {
				// A block entered again (configure terminal) is the same one.
				i := slices.IndexFunc(p.cfg.FailClose, func(f *FailClose) bool { return f.Map == a[0] })
				if i >= 0 {
					p.push(m.failClose, p.cfg.FailClose[i])
					return
				}
				f := &FailClose{Map: a[0], Line: p.line}
				p.cfg.FailClose = append(p.cfg.FailClose, f)
				p.push(m.failClose, f)
			}, enters: true},
		{kw: []string{"crypto", "map"}, syntax: "crypto map NAME SEQ gdoi", min: 3, max: 3,
			match: func(a []string) bool { // one argument: the interface form
				return len(a) != 1 && !(len(a) == 3 && strings.EqualFold(a[1], "local-address"))
			},
			run: func(p *parser, _ any, a []string) { p.cryptoMap(m, a) }, enters: true},
		ce("interface NAME", 1, -1, func(p *parser, _ any, a []string) { p.iface(m, a) }),
		c("crypto isakmp keepalive SECONDS [RETRY] [periodic | on-demand]", 1, 3, (*parser).isakmpKeepalive),
		c("access-list NUMBER {permit | deny | remark} ...", 2, -1, (*parser).numberedACL),
		{kw: []string{"crypto", "map"}, syntax: "crypto map NAME local-address INTERFACE", min: 3, max: 3, hidden: true,
			match: func(a []string) bool { return len(a) == 3 && strings.EqualFold(a[1], "local-address") },
			run: func(p *parser, _ any, a []string) {
				p.notef("%q not used by groupvpn (registration and rekeys are sent from the address the kernel chooses toward the key server or member)", p.text)
			}},
		{kw: []string{"crypto", "key", "generate"}, syntax: "crypto key generate {rsa | ec} ... label LABEL ...", min: 0, max: -1, hidden: true,
			run: func(p *parser, _ any, a []string) {
				for i := 0; i+1 < len(a); i++ {
					if strings.EqualFold(a[i], "label") {
						if p.generated == nil {
							p.generated = map[string]int{}
						}
						p.generated[a[i+1]] = p.line
					}
				}
				p.notef("%q not used by groupvpn in a configuration (as on IOS, keys are not kept in it): the same command generates the key into isakmpd's key store on the CLI (groupvpn key before isakmpd starts, groupvpn cli once it runs), or the IOS key server's key is imported there (crypto key import rsa LABEL pem terminal); docs/cli.md, Keys", p.text)
			}},
		unused("version", "the IOS software version; groupvpn version sets the announced GDOI version", false),
		unused("building", "a show running-config header", false),
		unused("current configuration", "a show running-config header", false),
		unused("last configuration change", "a show running-config header", false),
		unused("nvram config last updated", "a show running-config header", false),
		unused("service", "an IOS service setting", false),
		unused("boot-start-marker", "an IOS boot marker", false),
		unused("boot-end-marker", "an IOS boot marker", false),
		unused("aaa new-model", "an IOS AAA setting", false),
		unused("no service", "an IOS service setting", false),
		unused("no aaa new-model", "an IOS AAA setting", false),
		unused("no ip http", "IOS's web server", false),
		unused("no ip domain", "IOS's resolver settings", false),
		unused("enable", "IOS's exec password; the control socket is the owner's", false),
		unused("username", "IOS's local users; the control socket is the owner's", false),
		unused("ip cef", "IOS forwarding; the kernel forwards", false),
		unused("ip route", "IOS's routing table; the kernel routes", false),
		unused("ip domain", "IOS's resolver settings", false),
		unused("ip domain-name", "IOS's resolver settings", false),
		unused("ip forward-protocol", "IOS forwarding", false),
		unused("ip http", "IOS's web server", false),
		unused("ip ssh", "IOS's SSH server", false),
		unused("ntp", "IOS's clock; the host keeps time", false),
		unused("clock", "IOS's clock; the host keeps time", false),
		unused("line", "IOS's terminal lines; the CLI is groupvpn cli", true),
		unused("router", "IOS routing protocols", true),
		unused("control-plane", "IOS control-plane policing", true),
	}
	m.isakmp.cmds = []*cmd{
		cn(1, "encryption aes [128 | 192 | 256]", 1, 2, (*parser).isakmpEncr),
		cn(1, "encr aes [128 | 192 | 256]", 1, 2, (*parser).isakmpEncr),
		c("hash {sha | sha256 | sha384 | sha512}", 1, 1, func(p *parser, o any, a []string) {
			if v, ok := p.choice(a[0], "hash", "sha", "sha256", "sha384", "sha512"); ok {
				o.(*ISAKMPPolicy).Hash = v
			}
		}),
		c("authentication {pre-share | rsa-sig | ecdsa-sig}", 1, 1, func(p *parser, o any, a []string) {
			if v, ok := p.choice(a[0], "authentication", string(AuthPreShare), string(AuthRSASig), string(AuthECDSASig)); ok {
				o.(*ISAKMPPolicy).Auth = AuthMethod(v)
			}
		}),
		c("group {14 | 15 | 16 | 19 | 20 | 21}", 1, 1, func(p *parser, o any, a []string) {
			if v, ok := p.choice(a[0], "Diffie-Hellman group", "14", "15", "16", "19", "20", "21"); ok {
				o.(*ISAKMPPolicy).Group, _ = strconv.Atoi(v)
			}
		}),
		c("lifetime SECONDS", 1, 1, func(p *parser, o any, a []string) {
			if v, ok := p.num(a[0], "lifetime", 60, 86400); ok {
				o.(*ISAKMPPolicy).Lifetime = seconds(v)
			}
		}),
	}
	m.transform.cmds = []*cmd{
		c("mode {tunnel | transport}", 1, 1, func(p *parser, o any, a []string) {
			if v, ok := p.choice(a[0], "mode", "tunnel", "transport"); ok {
				o.(*TransformSet).Mode = v
			}
		}),
	}
	m.profile.cmds = []*cmd{
		c("set transform-set NAME [NAME ...]", 1, 6, func(p *parser, o any, a []string) {
			pr := o.(*IPsecProfile)
			pr.TransformSetNames, pr.TransformSetLine = slices.Clone(a), p.line
		}),
		c("set security-association lifetime seconds SECONDS", 1, 1, func(p *parser, o any, a []string) {
			if v, ok := p.num(a[0], "security-association lifetime seconds", 120, 86400); ok {
				o.(*IPsecProfile).Lifetime = seconds(v)
			}
		}),
	}
	ace := func(std bool) []*cmd {
		run := func(p *parser, o any, a []string) { p.ace(o.(*ACL), std) }
		syn := "[SEQ] {permit | deny} PROTOCOL SOURCE [eq PORT] DESTINATION [eq PORT]"
		if std {
			syn = "[SEQ] {permit | deny} SOURCE"
		}
		return []*cmd{
			{kw: []string{"permit"}, syntax: syn, min: 0, max: -1, run: run},
			{kw: []string{"deny"}, syntax: syn, min: 0, max: -1, run: run},
			{kw: nil, syntax: syn, min: 1, max: -1, run: run, match: func(a []string) bool {
				return len(a) > 0 && a[0] != "" && a[0][0] >= '0' && a[0][0] <= '9'
			}},
		}
	}
	m.aclExt.cmds = ace(false)
	m.aclStd.cmds = ace(true)
	m.group.cmds = []*cmd{
		c("identity number NUMBER", 1, 1, func(p *parser, o any, a []string) {
			g := o.(*Group)
			if v, ok := p.num(a[0], "identity number", 1, 4294967295); ok {
				g.Identity, g.IdentityLine = uint32(v), p.line
			}
		}),
		ce("server local", 0, 0, func(p *parser, o any, _ []string) {
			g := o.(*Group)
			if g.Server == nil {
				g.Server = &ServerLocal{RekeyKeyBits: DefaultRekeyKeyBits, RekeyLifetime: DefaultRekeyLifetime,
					RekeyRetransmit: DefaultRetransmit, RekeyRetransmits: DefaultRetransmits, Line: p.line}
			}
			p.push(m.server, g.Server)
		}),
		c("server address ipv4 A.B.C.D", 1, 1, func(p *parser, o any, a []string) {
			g := o.(*Group)
			addr, ok := p.ipv4(a[0], "server address ipv4")
			if !ok {
				return
			}
			for _, s := range g.Servers {
				if s.Addr == addr {
					p.errorf("server address ipv4 %s is already given at line %d", addr, s.Line)
					return
				}
			}
			g.Servers = append(g.Servers, ServerAddr{Addr: addr, Line: p.line})
		}),
		c("client registration interface NAME", 1, 1, func(p *parser, o any, a []string) {
			g := o.(*Group)
			g.RegistrationInterface, g.RegistrationIfaceLine = a[0], p.line
		}),
	}
	m.server.cmds = []*cmd{
		c("rekey algorithm aes {128 | 192 | 256}", 1, 1, func(p *parser, o any, a []string) {
			if v, ok := p.choice(a[0], "rekey algorithm aes key length", "128", "192", "256"); ok {
				o.(*ServerLocal).RekeyKeyBits, _ = strconv.Atoi(v)
			}
		}),
		c("rekey lifetime seconds SECONDS", 1, 1, func(p *parser, o any, a []string) {
			if v, ok := p.num(a[0], "rekey lifetime seconds", 300, 86400); ok {
				o.(*ServerLocal).RekeyLifetime = seconds(v)
			}
		}),
		c("rekey retransmit SECONDS number COUNT", 3, 3, func(p *parser, o any, a []string) {
			s := o.(*ServerLocal)
			if !p.keyword(a[1], "number", "rekey retransmit SECONDS number COUNT") {
				return
			}
			iv, ok1 := p.num(a[0], "rekey retransmit interval", 10, 60)
			n, ok2 := p.num(a[2], "rekey retransmit number", 1, 10)
			if ok1 && ok2 {
				s.RekeyRetransmit, s.RekeyRetransmits = seconds(iv), int(n)
			}
		}),
		c("rekey authentication mypubkey {rsa | ec} LABEL", 2, 2, func(p *parser, o any, a []string) {
			s := o.(*ServerLocal)
			if t, ok := p.choice(a[0], "rekey authentication key type", "rsa", "ec"); ok {
				s.RekeyKeyType, s.RekeyKeyLabel, s.RekeyKeyLine = t, a[1], p.line
			}
		}),
		c("rekey address ipv4 ACL", 1, 1, func(p *parser, o any, a []string) {
			s := o.(*ServerLocal)
			s.RekeyACLName, s.RekeyACLLine = a[0], p.line
		}),
		c("rekey multicast ttl TTL", 1, 1, func(p *parser, o any, a []string) {
			if v, ok := p.num(a[0], "rekey multicast ttl", 1, 255); ok {
				o.(*ServerLocal).RekeyTTL = int(v)
			}
		}),
		c("rekey multicast interface NAME", 1, 1, func(p *parser, o any, a []string) {
			o.(*ServerLocal).RekeyInterface = a[0]
		}),
		c("rekey transport unicast", 0, 0, func(p *parser, o any, a []string) {
			s := o.(*ServerLocal)
			s.RekeyUnicast, s.RekeyUnicastLine = true, p.line
		}),
		c("address ipv4 A.B.C.D", 1, 1, func(p *parser, o any, a []string) {
			if addr, ok := p.ipv4(a[0], "address ipv4"); ok {
				o.(*ServerLocal).Address, o.(*ServerLocal).AddressLine = addr, p.line
			}
		}),
		c("authorization address ipv4 ACL", 1, 1, func(p *parser, o any, a []string) {
			s := o.(*ServerLocal)
			s.AuthorizationACLName, s.AuthorizationACLLine = a[0], p.line
		}),
		c("authorization identity PATTERN", 1, -1, func(p *parser, o any, a []string) {
			s := o.(*ServerLocal)
			pat := p.rest(2)
			if slices.Contains(s.AuthorizationIdentities, pat) {
				p.errorf("authorization identity %q is already given", pat)
				return
			}
			s.AuthorizationIdentities = append(s.AuthorizationIdentities, pat)
		}),
		c("sa receive-only", 0, 0, func(p *parser, o any, a []string) { o.(*ServerLocal).ReceiveOnly = true }),
		{kw: []string{"redundancy"}, syntax: "redundancy", min: 0, max: 0,
			run: func(p *parser, o any, a []string) {
				s := o.(*ServerLocal)
				if s.Redundancy == nil {
					s.Redundancy = &Redundancy{Line: p.line}
				}
				p.push(m.redundancy, s.Redundancy)
			}, enters: true},
		ce("sa ipsec SEQ", 1, 1, func(p *parser, o any, a []string) { p.saIPsec(m, o.(*ServerLocal), a) }),
	}
	m.sa.cmds = []*cmd{
		c("profile NAME", 1, 1, func(p *parser, o any, a []string) {
			s := o.(*SAIPsec)
			s.ProfileName, s.ProfileLine = a[0], p.line
		}),
		c("match address ipv4 ACL", 1, 1, func(p *parser, o any, a []string) {
			s := o.(*SAIPsec)
			s.MatchACLName, s.MatchLine = a[0], p.line
		}),
		c("replay counter window-size {64 | 128 | 256 | 512 | 1024}", 1, 1, func(p *parser, o any, a []string) {
			if v, ok := p.choice(a[0], "replay counter window-size", "64", "128", "256", "512", "1024"); ok {
				s := o.(*SAIPsec)
				s.Replay = ReplayCounter
				s.ReplayWindow, _ = strconv.Atoi(v)
			}
		}),
		c("replay time window-size SECONDS", 1, 1, func(p *parser, o any, a []string) {
			if v, ok := p.num(a[0], "replay time window-size", 1, 100); ok {
				s := o.(*SAIPsec)
				s.Replay, s.ReplayWindow = ReplayTime, int(v)
			}
		}),
		c("no replay", 0, 0, func(p *parser, o any, a []string) {
			s := o.(*SAIPsec)
			s.Replay, s.ReplayWindow = ReplayNone, 0
		}),
	}
	m.cmap.cmds = []*cmd{
		c("set group NAME", 1, 1, func(p *parser, o any, a []string) {
			e := o.(*CryptoMapEntry)
			e.GroupName, e.GroupLine = a[0], p.line
		}),
		{kw: []string{"match", "address"}, syntax: "match address ACL", min: 1, max: 1, hidden: true,
			run: func(p *parser, _ any, a []string) {
				p.errorf("%q: a group member's own deny list is not supported: groupvpn applies the key server's policy (sa ipsec match address) only, so the traffic it names would be encrypted; add its deny entries to the key server's ACL and remove this line", p.text)
			}},
	}
	m.redundancy.cmds = []*cmd{
		c("local priority PRIORITY", 1, 1, func(p *parser, o any, a []string) {
			if v, ok := p.num(a[0], "local priority", 1, MaxLocalPriority); ok {
				r := o.(*Redundancy)
				r.LocalPriority, r.LocalPriorityLine = int(v), p.line
			}
		}),
		// identity SUBJECT is a groupvpn extension (docs/coop.md "Peer
		// authorization"): the certificate subject the peer KS must
		// present; without it only a pre-shared key for exactly the
		// peer's address authenticates it as a KS.
		c("peer address ipv4 A.B.C.D [identity SUBJECT]", 1, -1, func(p *parser, o any, a []string) {
			addr, ok := p.ipv4(a[0], "peer address ipv4")
			if !ok {
				return
			}
			var ident string
			if len(a) > 1 {
				if a[1] != "identity" || len(a) < 3 {
					p.errorf("peer address ipv4 %s: expected identity SUBJECT (the peer key server's certificate subject, e.g. CN=ks2,O=Example, or its common name)", addr)
					return
				}
				ident = strings.Join(a[2:], " ")
			}
			r := o.(*Redundancy)
			if i := slices.Index(r.Peers, addr); i >= 0 {
				p.errorf("peer address ipv4 %s is already configured (line %d)", addr, r.PeerLines[i])
				return
			}
			if len(r.Peers) >= MaxCOOPPeers {
				p.errorf("peer address ipv4 %s: a key server cooperates with at most %d peers", addr, MaxCOOPPeers)
				return
			}
			r.Peers, r.PeerLines = append(r.Peers, addr), append(r.PeerLines, p.line)
			r.PeerIdentities = append(r.PeerIdentities, ident)
		}),
		// groupvpn extensions: IOS has fixed COOP timers (docs/config.md).
		c("timers announce SECONDS", 1, 1, func(p *parser, o any, a []string) {
			if v, ok := p.num(a[0], "timers announce", 1, 3600); ok {
				r := o.(*Redundancy)
				r.Period, r.PeriodLine = seconds(v), p.line
			}
		}),
		c("timers dead SECONDS", 1, 1, func(p *parser, o any, a []string) {
			if v, ok := p.num(a[0], "timers dead", 2, 86400); ok {
				r := o.(*Redundancy)
				r.Dead, r.DeadLine = seconds(v), p.line
			}
		}),
		c("timers election-wait SECONDS", 1, 1, func(p *parser, o any, a []string) {
			if v, ok := p.num(a[0], "timers election-wait", 1, 3600); ok {
				r := o.(*Redundancy)
				r.ElectionWait, r.ElectionWaitLine = seconds(v), p.line
			}
		}),
	}
	m.failClose.cmds = []*cmd{
		c("activate", 0, 0, func(p *parser, o any, a []string) { o.(*FailClose).Activated = true }),
		c("match address ACL", 1, 1, func(p *parser, o any, a []string) {
			f := o.(*FailClose)
			f.MatchACLName, f.MatchLine = a[0], p.line
		}),
	}
	m.iface.cmds = []*cmd{
		unused("description", "a comment", false),
		unused("ip address", "the interface's address is the host's", false),
		unused("no ip address", "the interface's address is the host's", false),
		unused("shutdown", "the host brings interfaces up and down", false),
		unused("no shutdown", "the host brings interfaces up and down", false),
		unused("duplex", "a link setting of the host", false),
		unused("speed", "a link setting of the host", false),
		unused("negotiation", "a link setting of the host", false),
		unused("media-type", "a link setting of the host", false),
		unused("mtu", "a link setting of the host", false),
		unused("bandwidth", "a link setting of the host", false),
		unused("load-interval", "a link setting of the host", false),
		weak(unused("ip", "an IOS interface setting", false)),
		weak(unused("ipv6", "an IOS interface setting", false)),
		weak(unused("no", "an IOS interface setting", false)),
		{kw: []string{"crypto", "map"}, syntax: "crypto map NAME", min: 1, max: 1,
			match: func(a []string) bool { return len(a) == 1 },
			run: func(p *parser, o any, a []string) {
				ifc := o.(*Interface)
				ifc.CryptoMap, ifc.CryptoMapLine = a[0], p.line
			}},
	}
	ikev2Modes(m, c, ce)
	return m
}

// Global commands.

func (p *parser) hostname(_ any, a []string) {
	if a == nil {
		return
	}
	p.cfg.Hostname, p.cfg.HostnameLine = a[0], p.line
}

// logging host {A.B.C.D | ipv6 ADDRESS} [transport udp [port N]]: RFC 5424
// over UDP. A host given again replaces its port (as IOS does).
func (p *parser) loggingHost(_ any, a []string) {
	if a == nil {
		return
	}
	what := "logging host"
	v6 := strings.EqualFold(a[0], "ipv6")
	if v6 {
		if len(a) < 2 {
			p.errorf("logging host ipv6 needs an address")
			return
		}
		a = a[1:]
	}
	addr, err := netip.ParseAddr(a[0])
	if err != nil || addr.Zone() != "" || addr.Is4() == v6 || addr.Is4In6() || addr.IsUnspecified() || addr.IsMulticast() {
		p.errorf("%s %q is not a unicast %s address", what, a[0], map[bool]string{false: "IPv4", true: "IPv6"}[v6])
		return
	}
	port := int64(DefaultLoggingPort)
	rest := a[1:]
	if len(rest) > 0 {
		if !strings.EqualFold(rest[0], "transport") || len(rest) < 2 {
			p.errorf("%s %s: expected transport udp [port PORT], not %q", what, a[0], strings.Join(rest, " "))
			return
		}
		switch strings.ToLower(rest[1]) {
		case "udp":
		case "tcp", "beep":
			p.errorf("%s %s transport %s: not supported (a stalled %s server would hold up the daemon's logging): use transport udp, or -syslog tcp://HOST:PORT", what, a[0], rest[1], rest[1])
			return
		default:
			p.errorf("%s %s: transport %q (accepted: udp)", what, a[0], rest[1])
			return
		}
		rest = rest[2:]
		if len(rest) > 0 {
			if !strings.EqualFold(rest[0], "port") || len(rest) != 2 {
				p.errorf("%s %s transport udp: expected port PORT, not %q", what, a[0], strings.Join(rest, " "))
				return
			}
			var ok bool
			if port, ok = p.num(rest[1], "logging host port", 1, 65535); !ok {
				return
			}
		}
	}
	for _, h := range p.cfg.Logging.Hosts {
		if h.Addr == addr {
			h.Port, h.Line = uint16(port), p.line
			return
		}
	}
	if len(p.cfg.Logging.Hosts) >= MaxLoggingHosts {
		p.errorf("%s: at most %d hosts", what, MaxLoggingHosts)
		return
	}
	p.cfg.Logging.Hosts = append(p.cfg.Logging.Hosts, &LogHost{Addr: addr, Port: uint16(port), Line: p.line})
}

// severity reads an IOS severity: a name (or a prefix of one) or 0-7.
func (p *parser) severity(s, what string) (string, bool) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n < len(Severities) {
		return Severities[n], true
	}
	for _, n := range Severities {
		if len(s) >= 2 && strings.HasPrefix(n, strings.ToLower(s)) {
			return n, true
		}
	}
	p.errorf("%s %q is not a severity (accepted: 0-7, %s)", what, s, strings.Join(Severities, ", "))
	return "", false
}

// logging buffered [SIZE] [LEVEL]: keep the last SIZE bytes of messages of
// severity LEVEL or more severe for show logging. As on IOS, a number 0-7
// alone is a level.
func (p *parser) loggingBuffered(_ any, a []string) {
	size := int64(DefaultLoggingBuffered)
	level := ""
	if len(a) > 0 {
		if n, err := strconv.Atoi(a[0]); err == nil && n > 7 || err != nil && len(a) == 2 {
			var ok bool
			if size, ok = p.num(a[0], "logging buffered", 4096, MaxLoggingBuffered); !ok {
				return
			}
			a = a[1:]
		}
	}
	if len(a) == 1 {
		var ok bool
		if level, ok = p.severity(a[0], "logging buffered"); !ok {
			return
		}
		if level == "debugging" {
			level = "" // the default, rendered explicitly
		}
	}
	l := &p.cfg.Logging
	l.Buffered, l.BufferedLevel, l.BufferedLine = int(size), level, p.line
}

// logging facility FACILITY: the facility of the messages to the hosts.
func (p *parser) loggingFacility(_ any, a []string) {
	name := strings.ToLower(a[0])
	if name == "kern" || Facility(name) == 23 && name != "local7" {
		var ok []string
		for _, n := range Facilities {
			if n != "" && n != "kern" {
				ok = append(ok, n)
			}
		}
		p.errorf("logging facility %q: not a facility (accepted: %s)", a[0], strings.Join(ok, ", "))
		return
	}
	if name == "local7" {
		name = ""
	}
	p.cfg.Logging.Facility, p.cfg.Logging.FacilityLine = name, p.line
}

// logging trap LEVEL: the most verbose severity the hosts get.
func (p *parser) loggingTrap(_ any, a []string) {
	level, ok := p.severity(a[0], "logging trap")
	if !ok {
		return
	}
	if level == "informational" {
		level = ""
	}
	p.cfg.Logging.Trap, p.cfg.Logging.TrapLine = level, p.line
}

func (p *parser) version(_ any, a []string) {
	if a == nil {
		return
	}
	v, err := version.Parse(a[0])
	if err != nil {
		p.errorf("groupvpn %v", err)
		return
	}
	if v.Less(version.Base) || version.Current.Less(v) {
		p.errorf("groupvpn version %s is out of range (accepted: %s-%s; a node announces this software's version or an older one)", v, version.Base, version.Current)
		return
	}
	p.cfg.Version, p.cfg.VersionLine = v, p.line
}

func (p *parser) isakmpPolicy(m *modes, a []string) {
	pol := &ISAKMPPolicy{KeyBits: DefaultISAKMPKeyBits, Hash: DefaultISAKMPHash, Auth: DefaultISAKMPAuth,
		Group: DefaultISAKMPGroup, Lifetime: DefaultISAKMPLifetime, Line: p.line}
	defer func() { p.push(m.isakmp, pol) }()
	if a == nil {
		return
	}
	n, ok := p.num(a[0], "crypto isakmp policy priority", 1, 10000)
	if !ok {
		return
	}
	pol.Priority = int(n)
	c := p.cfg
	i, found := slices.BinarySearchFunc(c.ISAKMPPolicies, pol.Priority, func(x *ISAKMPPolicy, n int) int { return x.Priority - n })
	if found {
		pol = c.ISAKMPPolicies[i]
		return
	}
	c.ISAKMPPolicies = slices.Insert(c.ISAKMPPolicies, i, pol)
}

func (p *parser) isakmpEncr(o any, a []string) {
	pol := o.(*ISAKMPPolicy)
	if !strings.EqualFold(a[0], "aes") {
		p.errorf("encryption %q is not supported (accepted: aes 128, aes 192, aes 256)", a[0])
		return
	}
	bits := DefaultISAKMPKeyBits
	if len(a) == 2 {
		v, ok := p.choice(a[1], "encryption aes key length", "128", "192", "256")
		if !ok {
			return
		}
		bits, _ = strconv.Atoi(v)
	}
	pol.KeyBits = bits
}

func (p *parser) isakmpKey(_ any, a []string) {
	if a == nil {
		return
	}
	const usage = "crypto isakmp key KEY address {A.B.C.D [MASK] | ipv6 PREFIX}"
	if !p.keyword(a[1], "address", usage) {
		return
	}
	var pfx netip.Prefix
	if strings.EqualFold(a[2], "ipv6") {
		if len(a) != 4 {
			p.errorf("%q: wrong number of arguments; usage: %s", p.text, usage)
			return
		}
		s := a[3]
		if !strings.Contains(s, "/") {
			s += "/128"
		}
		x, err := netip.ParsePrefix(s)
		if err != nil || !x.Addr().Is6() || x.Addr().Is4In6() {
			p.errorf("crypto isakmp key address ipv6 %q is not an IPv6 prefix (e.g. 2001:db8::/32 or ::/0)", a[3])
			return
		}
		if x.Masked() != x {
			p.errorf("crypto isakmp key address ipv6 %s has bits set beyond the prefix length; write %s", x, x.Masked())
			return
		}
		pfx = x
	} else {
		addr, ok := p.ipv4(a[2], "crypto isakmp key address")
		if !ok {
			return
		}
		bits := 32
		if len(a) == 4 {
			m, ok := p.netmask(a[3], "crypto isakmp key address mask", false)
			if !ok {
				return
			}
			bits = m
		}
		pfx = netip.PrefixFrom(addr, bits)
		if pfx.Masked() != pfx {
			p.errorf("crypto isakmp key address %s %s has host bits set; write %s", a[2], a[3], pfx.Masked().Addr())
			return
		}
	}
	for _, k := range p.cfg.ISAKMPKeys {
		if k.Prefix == pfx {
			p.errorf("crypto isakmp key for %s is already given at line %d", pfx, k.Line)
			return
		}
	}
	p.cfg.ISAKMPKeys = append(p.cfg.ISAKMPKeys, &ISAKMPKey{Key: a[0], Prefix: pfx, Line: p.line})
}

// netmask parses a contiguous IPv4 netmask (255.255.255.0) or, with
// wildcard, an IOS wildcard mask (0.0.0.255), returning the prefix length.
func (p *parser) netmask(s, what string, wildcard bool) (int, bool) {
	m, err := netip.ParseAddr(s)
	if err != nil || !m.Is4() {
		p.errorf("%s %q is not a dotted-quad mask", what, s)
		return 0, false
	}
	b := m.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	if wildcard {
		v = ^v
	}
	// v must be ones followed by zeros.
	ones := 0
	for ones < 32 && v&(1<<(31-ones)) != 0 {
		ones++
	}
	if ones < 32 && v<<ones != 0 {
		kind := "netmask (e.g. 255.255.255.0)"
		if wildcard {
			kind = "wildcard mask (e.g. 0.0.0.255)"
		}
		p.errorf("%s %s is not a contiguous %s", what, s, kind)
		return 0, false
	}
	return ones, true
}

// crypto isakmp keepalive SECONDS [RETRY] [periodic | on-demand]: IOS's
// dead peer detection timer (RFC 3706), run by every phase-1 SA (ike.DPD).
func (p *parser) isakmpKeepalive(_ any, a []string) {
	if a == nil {
		return
	}
	secs, ok := p.num(a[0], "crypto isakmp keepalive seconds", 10, 3600)
	if !ok {
		return
	}
	k := Keepalive{Seconds: int(secs), Line: p.line}
	rest := a[1:]
	if len(rest) > 0 && rest[0] != "" && rest[0][0] >= '0' && rest[0][0] <= '9' {
		r, ok := p.num(rest[0], "crypto isakmp keepalive retry", 2, 60)
		if !ok {
			return
		}
		if r != DefaultKeepaliveRetry { // IOS's default is not kept, nor rendered
			k.Retry = int(r)
		}
		rest = rest[1:]
	}
	switch {
	case len(rest) > 1:
		p.errorf("%q: wrong number of arguments; usage: crypto isakmp keepalive SECONDS [RETRY] [periodic | on-demand]", p.text)
		return
	case len(rest) == 1:
		v, ok := p.choice(rest[0], "crypto isakmp keepalive", "periodic", "on-demand")
		if !ok {
			return
		}
		k.Periodic = v == "periodic"
	}
	p.cfg.Keepalive = k
}

// access-list NUMBER {permit | deny} ...: IOS's numbered access lists,
// standard (1-99, 1300-1999) or extended (100-199, 2000-2699). Each line
// adds an entry to the access list named NUMBER, the one `ip access-list
// {standard | extended} NUMBER` also edits (and renders it as); `remark`
// is a note.
func (p *parser) numberedACL(_ any, a []string) {
	if a == nil {
		return
	}
	n, ok := p.num(a[0], "access-list number", 1, 2699)
	if !ok {
		return
	}
	var std bool
	switch {
	case n <= 99 || (n >= 1300 && n <= 1999):
		std = true
	case (n >= 100 && n <= 199) || n >= 2000:
	default:
		p.errorf("access-list %d: not an IP access list number (accepted: 1-99 and 1300-1999 standard, 100-199 and 2000-2699 extended)", n)
		return
	}
	if strings.EqualFold(a[1], "remark") {
		p.notef("%q not used by groupvpn (a comment)", p.text)
		return
	}
	if !strings.EqualFold(a[1], "permit") && !strings.EqualFold(a[1], "deny") {
		p.errorf("access-list %d: %q is not supported (accepted: permit, deny, remark)", n, a[1])
		return
	}
	name := strconv.FormatInt(n, 10)
	acl := p.cfg.ACL(name)
	if acl == nil {
		acl = &ACL{Name: name, Standard: std, Line: p.line}
		p.cfg.ACLs = append(p.cfg.ACLs, acl)
	} else if acl.Standard != std {
		p.errorf("access list %q is already defined at line %d as a different kind (standard/extended)", name, acl.Line)
		return
	}
	text := p.text
	p.text = strings.Join(a[1:], " ")
	p.ace(acl, std)
	p.text = text
}

func (p *parser) isakmpIdentity(_ any, a []string) {
	if a == nil {
		return
	}
	if v, ok := p.choice(a[0], "crypto isakmp identity", "address", "dn", "hostname"); ok {
		p.cfg.Identity, p.cfg.IdentityLine = IdentityType(v), p.line
	}
}

func (p *parser) keyImport(_ any, a []string) {
	if a == nil {
		return
	}
	typ, ok := p.choice(a[0], "crypto key import key type", "rsa", "ec")
	if !ok || !p.keyword(a[2], "file", "crypto key import {rsa | ec} LABEL file PATH") {
		return
	}
	if k := p.cfg.Key(a[1]); k != nil {
		p.errorf("crypto key import: label %q is already used at line %d", a[1], k.Line)
		return
	}
	what := "crypto key import " + typ + " " + a[1]
	signer, ok := p.loadKey(what, a[3], typ)
	if !ok {
		return
	}
	p.cfg.Keys = append(p.cfg.Keys, &KeyPair{Type: typ, Label: a[1], Path: a[3], Signer: signer, Line: p.line})
}

func (p *parser) pkiCert(_ any, a []string) {
	if a == nil {
		return
	}
	certs, ok := p.loadCerts("crypto pki certificate", a[0])
	if !ok {
		return
	}
	k := &p.cfg.PKI
	k.CertPath, k.Chain, k.CertLine = a[0], certs, p.line
}

func (p *parser) pkiCA(_ any, a []string) {
	if a == nil {
		return
	}
	certs, ok := p.loadCerts("crypto pki ca", a[0])
	if !ok {
		return
	}
	k := &p.cfg.PKI
	k.CAPath, k.CACerts, k.CALine = a[0], certs, p.line
	k.Roots = poolOf(certs)
}

func (p *parser) pkiKey(_ any, a []string) {
	if a == nil {
		return
	}
	signer, ok := p.loadKey("crypto pki key", a[0], "")
	if !ok {
		return
	}
	k := &p.cfg.PKI
	k.KeyPath, k.Key, k.KeyLine = a[0], signer, p.line
}

func (p *parser) transformSet(m *modes, a []string) {
	ts := &TransformSet{Mode: "tunnel", Line: p.line}
	defer func() { p.push(m.transform, ts) }()
	if a == nil {
		return
	}
	parsed, ok := p.transforms(a[0], a[1:])
	if !ok {
		return
	}
	if old := p.cfg.TransformSet(a[0]); old != nil {
		parsed.Mode, parsed.Line = old.Mode, old.Line
		*old = *parsed
		ts = old
		return
	}
	ts = parsed
	p.cfg.TransformSets = append(p.cfg.TransformSets, ts)
}

func (p *parser) transforms(name string, words []string) (*TransformSet, bool) {
	ts := &TransformSet{Name: name, Mode: "tunnel", Line: p.line}
	what := "crypto ipsec transform-set " + name
	hmac := func(w, prefix string) (Integrity, bool) {
		// esp-hmac and ah-hmac have the prefix and the suffix but nothing
		// between them (they used to panic the parser: issue 11 item 3).
		if len(w) <= len(prefix)+len("-hmac") || !strings.HasPrefix(w, prefix) || !strings.HasSuffix(w, "-hmac") {
			return "", false
		}
		switch v := w[len(prefix) : len(w)-len("-hmac")]; v {
		case "sha", "sha256", "sha384", "sha512":
			return Integrity(v), true
		}
		return "", false
	}
	for i := 0; i < len(words); i++ {
		w := strings.ToLower(words[i])
		switch w {
		case string(ESPAES), string(ESPGCM), string(ESPGMAC):
			if ts.ESP != "" {
				p.errorf("%s: two ESP ciphers (%s and %s); use one", what, ts.ESP, w)
				return nil, false
			}
			ts.ESP, ts.ESPKeyBits = ESPCipher(w), DefaultESPKeyBits
			if i+1 < len(words) && words[i+1] != "" && words[i+1][0] >= '0' && words[i+1][0] <= '9' {
				v, ok := p.choice(words[i+1], w+" key length", "128", "192", "256")
				if !ok {
					return nil, false
				}
				ts.ESPKeyBits, _ = strconv.Atoi(v)
				i++
			}
			continue
		}
		if h, ok := hmac(w, "esp-"); ok {
			if ts.ESPAuth != "" {
				p.errorf("%s: two ESP integrity transforms (esp-%s-hmac and %s); use one", what, ts.ESPAuth, w)
				return nil, false
			}
			ts.ESPAuth = h
			continue
		}
		if h, ok := hmac(w, "ah-"); ok {
			if ts.AHAuth != "" {
				p.errorf("%s: two AH transforms (ah-%s-hmac and %s); use one", what, ts.AHAuth, w)
				return nil, false
			}
			ts.AHAuth = h
			continue
		}
		p.errorf("%s: transform %q is not supported (accepted: esp-aes, esp-gcm, esp-gmac [128|192|256], esp-sha-hmac, esp-sha256-hmac, esp-sha384-hmac, esp-sha512-hmac, ah-sha-hmac, ah-sha256-hmac, ah-sha384-hmac, ah-sha512-hmac)", what, words[i])
		return nil, false
	}
	switch {
	case (ts.ESP == ESPGCM || ts.ESP == ESPGMAC) && ts.ESPAuth != "":
		p.errorf("%s: %s provides its own integrity and takes no esp-%s-hmac", what, ts.ESP, ts.ESPAuth)
	case ts.ESP == ESPAES && ts.ESPAuth == "" && ts.AHAuth == "":
		p.errorf("%s: esp-aes without integrity; add esp-sha256-hmac (or use esp-gcm)", what)
	case ts.ESP == "" && ts.ESPAuth != "":
		p.errorf("%s: esp-%s-hmac needs an ESP cipher (esp-aes)", what, ts.ESPAuth)
	default:
		return ts, true
	}
	return nil, false
}

func (p *parser) profile(m *modes, a []string) {
	pr := &IPsecProfile{Lifetime: DefaultSALifetime, Line: p.line}
	defer func() { p.push(m.profile, pr) }()
	if a == nil {
		return
	}
	if old := p.cfg.Profile(a[0]); old != nil {
		pr = old
		return
	}
	pr.Name = a[0]
	p.cfg.Profiles = append(p.cfg.Profiles, pr)
}

func (p *parser) acl(m *modes, std bool, a []string) {
	acl := &ACL{Standard: std, Line: p.line}
	md := m.aclExt
	if std {
		md = m.aclStd
	}
	defer func() { p.push(md, acl) }()
	if a == nil {
		return
	}
	if old := p.cfg.ACL(a[0]); old != nil {
		if old.Standard != std {
			p.errorf("access list %q is already defined at line %d as a different kind (standard/extended)", a[0], old.Line)
			return
		}
		acl = old
		return
	}
	acl.Name = a[0]
	p.cfg.ACLs = append(p.cfg.ACLs, acl)
}

// ace parses an access-list entry from the current line.
func (p *parser) ace(acl *ACL, std bool) {
	w := strings.Fields(p.text)
	e := &ACE{Line: p.line, Protocol: AnyProtocol, Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0)}
	if w[0][0] >= '0' && w[0][0] <= '9' {
		v, ok := p.num(w[0], "access-list sequence number", 1, 2147483647)
		if !ok {
			return
		}
		e.Seq = int(v)
		w = w[1:]
	}
	syntax := "[SEQ] {permit | deny} PROTOCOL SOURCE [eq PORT] DESTINATION [eq PORT]"
	if std {
		syntax = "[SEQ] {permit | deny} SOURCE"
	}
	if len(w) == 0 {
		p.errorf("%q: incomplete access-list entry; usage: %s", p.text, syntax)
		return
	}
	act, ok := p.choice(w[0], "access-list action", "permit", "deny")
	if !ok {
		return
	}
	e.Action = Action(act)
	w = w[1:]
	if std {
		src, rest, ok := p.addrSpec(w, true)
		if !ok {
			return
		}
		if len(rest) > 0 {
			p.errorf("access-list entry: unexpected %q after the source; usage: %s", strings.Join(rest, " "), syntax)
			return
		}
		e.Src = src
	} else {
		if len(w) < 3 {
			p.errorf("%q: incomplete access-list entry; usage: %s", p.text, syntax)
			return
		}
		switch proto := strings.ToLower(w[0]); proto {
		case "ip":
		case "icmp":
			e.Protocol = 1
		case "tcp":
			e.Protocol = 6
		case "udp":
			e.Protocol = 17
		default:
			v, err := strconv.Atoi(proto)
			if err != nil {
				p.errorf("access-list protocol %q is not supported (accepted: ip, icmp, tcp, udp, 0-255)", w[0])
				return
			}
			if v < 0 || v > 255 {
				p.errorf("access-list protocol %d is out of range (accepted: 0-255)", v)
				return
			}
			e.Protocol = v
		}
		w = w[1:]
		var ok bool
		if e.Src, w, ok = p.addrSpec(w, false); !ok {
			return
		}
		if e.SrcPort, w, ok = p.port(e, w); !ok {
			return
		}
		if len(w) == 0 {
			p.errorf("%q: access-list entry lacks a destination; usage: %s", p.text, syntax)
			return
		}
		if e.Dst, w, ok = p.addrSpec(w, false); !ok {
			return
		}
		if e.DstPort, w, ok = p.port(e, w); !ok {
			return
		}
		if len(w) > 0 {
			p.errorf("access-list entry: unexpected %q after the destination; usage: %s", strings.Join(w, " "), syntax)
			return
		}
	}
	if e.Seq == 0 {
		e.Seq = 10
		if n := len(acl.Entries); n > 0 {
			e.Seq = acl.Entries[n-1].Seq + 10
		}
	}
	i, found := slices.BinarySearchFunc(acl.Entries, e.Seq, func(x *ACE, s int) int { return x.Seq - s })
	if found {
		p.errorf("access-list %s sequence number %d is already used at line %d", acl.Name, e.Seq, acl.Entries[i].Line)
		return
	}
	acl.Entries = slices.Insert(acl.Entries, i, e)
}

// addrSpec parses any | host A | A WILDCARD (standard lists: also a bare A).
func (p *parser) addrSpec(w []string, std bool) (netip.Prefix, []string, bool) {
	if len(w) == 0 {
		p.errorf("%q: missing address (any, host A.B.C.D or A.B.C.D WILDCARD)", p.text)
		return netip.Prefix{}, nil, false
	}
	switch strings.ToLower(w[0]) {
	case "any":
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0), w[1:], true
	case "host":
		if len(w) < 2 {
			p.errorf("%q: host needs an address", p.text)
			return netip.Prefix{}, nil, false
		}
		a, ok := p.ipv4(w[1], "access-list host")
		return netip.PrefixFrom(a, 32), w[2:], ok
	}
	a, ok := p.ipv4(w[0], "access-list address")
	if !ok {
		return netip.Prefix{}, nil, false
	}
	if len(w) < 2 || !strings.Contains(w[1], ".") {
		if std {
			return netip.PrefixFrom(a, 32), w[1:], true
		}
		p.errorf("access-list address %s needs a wildcard mask (e.g. %s 0.0.0.255), or write host %s", a, a, a)
		return netip.Prefix{}, nil, false
	}
	bits, ok := p.netmask(w[1], "access-list wildcard", true)
	if !ok {
		return netip.Prefix{}, nil, false
	}
	pfx := netip.PrefixFrom(a, bits)
	if pfx.Masked() != pfx {
		p.errorf("access-list address %s %s has bits set inside the wildcard; write %s %s", a, w[1], pfx.Masked().Addr(), w[1])
		return netip.Prefix{}, nil, false
	}
	return pfx, w[2:], true
}

func (p *parser) port(e *ACE, w []string) (int, []string, bool) {
	if len(w) == 0 {
		return 0, w, true
	}
	switch strings.ToLower(w[0]) {
	case "eq":
	case "gt", "lt", "neq", "range":
		p.errorf("access-list port operator %q is not supported (accepted: eq)", w[0])
		return 0, nil, false
	default:
		return 0, w, true
	}
	if e.Protocol != 6 && e.Protocol != 17 {
		p.errorf("access-list port (eq) needs protocol tcp or udp")
		return 0, nil, false
	}
	if len(w) < 2 {
		p.errorf("%q: eq needs a port number", p.text)
		return 0, nil, false
	}
	v, ok := p.num(w[1], "access-list port", 1, 65535)
	return int(v), w[2:], ok
}

func (p *parser) group(m *modes, a []string) {
	g := &Group{ClientProtocol: ProtocolGDOI, Line: p.line}
	defer func() { p.push(m.group, g) }()
	if a == nil {
		return
	}
	if old := p.cfg.Group(a[0]); old != nil {
		g = old
		return
	}
	g.Name = a[0]
	p.cfg.Groups = append(p.cfg.Groups, g)
}

func (p *parser) saIPsec(m *modes, s *ServerLocal, a []string) {
	sa := &SAIPsec{Replay: ReplayCounter, ReplayWindow: DefaultReplayWindow, Line: p.line}
	defer func() { p.push(m.sa, sa) }()
	if a == nil {
		return
	}
	n, ok := p.num(a[0], "sa ipsec sequence number", 1, 65535)
	if !ok {
		return
	}
	sa.Seq = int(n)
	i, found := slices.BinarySearchFunc(s.SAs, sa.Seq, func(x *SAIPsec, n int) int { return x.Seq - n })
	if found {
		sa = s.SAs[i]
		return
	}
	s.SAs = slices.Insert(s.SAs, i, sa)
}

func (p *parser) cryptoMap(m *modes, a []string) {
	e := &CryptoMapEntry{Line: p.line}
	defer func() { p.push(m.cmap, e) }()
	if a == nil {
		return
	}
	n, ok := p.num(a[1], "crypto map sequence number", 1, 65535)
	if !ok {
		return
	}
	if !strings.EqualFold(a[2], "gdoi") {
		p.errorf("crypto map %s %d %s: only gdoi crypto maps are supported", a[0], n, a[2])
		return
	}
	e.Map, e.Seq = a[0], int(n)
	c := p.cfg
	i, found := slices.BinarySearchFunc(c.CryptoMaps, e, func(x, y *CryptoMapEntry) int {
		if x.Map != y.Map {
			return strings.Compare(x.Map, y.Map)
		}
		return x.Seq - y.Seq
	})
	if found {
		e = c.CryptoMaps[i]
		return
	}
	c.CryptoMaps = slices.Insert(c.CryptoMaps, i, e)
}

func (p *parser) iface(m *modes, a []string) {
	ifc := &Interface{Line: p.line}
	defer func() { p.push(m.iface, ifc) }()
	if a == nil {
		return
	}
	name := strings.Join(a, "")
	for _, old := range p.cfg.Interfaces {
		if old.Name == name {
			ifc = old
			return
		}
	}
	ifc.Name = name
	p.cfg.Interfaces = append(p.cfg.Interfaces, ifc)
}
