package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// editKS is the seed 001 key server: sa ipsec 1 uses profile gdoi-p, and
// gdoi-p2 is the policy change the operator makes.
const editKS = `hostname Device
crypto isakmp policy 10
 authentication pre-share
crypto isakmp key k address 0.0.0.0 0.0.0.0
crypto isakmp key k2 address 10.9.0.0 255.255.0.0
ip access-list extended tr
 permit ip 10.0.0.0 0.255.255.255 10.0.0.0 0.255.255.255
 deny udp any eq 848 any eq 848
ip access-list extended tr2
 permit ip 10.2.0.0 0.0.255.255 10.2.0.0 0.0.255.255
crypto ipsec transform-set ts-cbc esp-aes esp-sha-hmac
crypto ipsec transform-set ts-gcm esp-gcm 256
crypto ipsec profile gdoi-p
 set transform-set ts-cbc
crypto ipsec profile gdoi-p2
 set transform-set ts-gcm
crypto gdoi group GET
 identity number 1
 server local
  rekey lifetime seconds 7200
  sa receive-only
  sa ipsec 1
   profile gdoi-p
   match address ipv4 tr
   replay time window-size 5
crypto gdoi group GM1
 identity number 2
 server address ipv4 10.0.0.1
crypto map m 10 gdoi
 set group GM1
crypto map m 20 gdoi
 set group GM1
interface eth0
 crypto map m
end
`

func newEditor(t *testing.T) (*Editor, *Config) {
	t.Helper()
	c, err := Parse("testdata/edit.conf", []byte(editKS))
	if err != nil {
		t.Fatal(err)
	}
	return NewEditor(c), c
}

// apply runs lines, each of which must succeed, and checks the prompt
// after each (want[i]; "" = configuration mode ended).
func apply(t *testing.T, e *Editor, steps ...[2]string) {
	t.Helper()
	for _, s := range steps {
		got, err := e.Apply(s[0])
		if err != nil {
			t.Fatalf("%s%s: %v\n--- candidate:\n%s", e.Prompt(), s[0], err, e.Text())
		}
		if got != s[1] {
			t.Fatalf("%q: prompt %q, want %q", s[0], got, s[1])
		}
	}
}

func refuse(t *testing.T, e *Editor, line, want string) {
	t.Helper()
	before, path := e.Text(), e.Prompt()
	got, err := e.Apply(line)
	if err == nil {
		t.Fatalf("%q accepted; want %q\n--- candidate:\n%s", line, want, e.Text())
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("%q: error %q, want it to contain %q", line, err, want)
	}
	if got != path || e.Text() != before {
		t.Fatalf("%q: refused but changed the editor (prompt %q → %q)", line, path, got)
	}
}

func candidate(t *testing.T, e *Editor) *Config {
	t.Helper()
	c, err := e.Candidate()
	if err != nil {
		t.Fatalf("Candidate: %v\n--- candidate:\n%s", err, e.Text())
	}
	return c
}

// proves: P1
// proves: O2
func TestEditSeedSession(t *testing.T) {
	e, running := newEditor(t)
	if p := e.Prompt(); p != "(config)" {
		t.Fatalf("initial prompt %q", p)
	}
	apply(t, e,
		[2]string{"crypto gdoi group GET", "(config-gdoi-group)"},
		[2]string{"server local", "(gdoi-local-server)"},
		[2]string{"sa ipsec 1", "(gdoi-sa-ipsec)"},
		[2]string{"no profile gdoi-p", "(gdoi-sa-ipsec)"},
		[2]string{"profile gdoi-p2", "(gdoi-sa-ipsec)"},
		[2]string{"end", ""},
	)
	c := candidate(t, e)
	if got := c.Group("GET").Server.SAs[0].ProfileName; got != "gdoi-p2" {
		t.Fatalf("sa ipsec 1 profile %q, want gdoi-p2", got)
	}
	if c.Group("GET").Server.SAs[0].Profile != c.Profile("gdoi-p2") {
		t.Fatal("the candidate's references are not resolved")
	}
	if got := running.Group("GET").Server.SAs[0].ProfileName; got != "gdoi-p" {
		t.Fatalf("the running configuration was modified: profile %q", got)
	}
	if c.File != "testdata/edit.conf" || c.Dir != "testdata" {
		t.Fatalf("candidate File %q Dir %q", c.File, c.Dir)
	}
	if !e.Changed() {
		t.Fatal("Changed() is false")
	}
	// The change is exactly one line of the canonical text.
	if d := strings.Replace(running.Render(), "   profile gdoi-p\n", "   profile gdoi-p2\n", 1); d != e.Text() {
		t.Fatalf("candidate:\n%s\nwant:\n%s", e.Text(), d)
	}
}

// proves: O2
func TestEditRefusesBadLines(t *testing.T) {
	e, _ := newEditor(t)
	apply(t, e, [2]string{"crypto gdoi group GET", "(config-gdoi-group)"},
		[2]string{"server local", "(gdoi-local-server)"},
		[2]string{"sa ipsec 1", "(gdoi-sa-ipsec)"})
	refuse(t, e, "profile", `"profile": wrong number of arguments; usage: profile NAME`)
	refuse(t, e, "replay time window-size 500", "replay time window-size 500 is out of range (accepted: 1-100)")
	refuse(t, e, "frobnicate now", `unknown command "frobnicate" in crypto gdoi group server local sa ipsec mode`)
	refuse(t, e, "sa ipsec 0", "sa ipsec sequence number 0 is out of range")
	refuse(t, e, "no profile gdoi-p9", `Nothing to remove`)
	refuse(t, e, "no", "Incomplete command")
	refuse(t, e, "crypto isakmp key k address 0.0.0.0 0.0.0.0", "crypto isakmp key for 0.0.0.0/0 is already given")
	refuse(t, e, "ip access-list standard tr", `access list "tr" is already defined`)
	// A reference to something undefined is accepted until end.
	apply(t, e, [2]string{"profile nosuch", "(gdoi-sa-ipsec)"})
	_, err := e.Apply("end")
	var ce *CommitError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), `running-config:`) || !strings.Contains(err.Error(), `"nosuch"`) {
		t.Fatalf("end with an undefined profile: %v", err)
	}
	for _, x := range ce.Errs {
		if x.File != RunningConfigName || x.Line == 0 {
			t.Fatalf("error %v: want running-config:LINE", x)
		}
		if l := strings.Split(e.Text(), "\n")[x.Line-1]; !strings.Contains(l, "profile nosuch") {
			t.Fatalf("error %v: line %d of the candidate is %q", x, x.Line, l)
		}
	}
}

// proves: P1
// proves: O2
func TestEditEndRefusesInvalidCandidate(t *testing.T) {
	e, _ := newEditor(t)
	apply(t, e, [2]string{"crypto gdoi group GET", "(config-gdoi-group)"},
		[2]string{"server local", "(gdoi-local-server)"},
		[2]string{"sa ipsec 1", "(gdoi-sa-ipsec)"},
		[2]string{"no profile gdoi-p", "(gdoi-sa-ipsec)"})
	p, err := e.Apply("end")
	if err == nil || p != "(gdoi-sa-ipsec)" {
		t.Fatalf("end without a profile: prompt %q, err %v", p, err)
	}
	if !strings.Contains(err.Error(), "% Configuration not committed") || !strings.Contains(err.Error(), "running-config:") {
		t.Fatalf("error %q", err)
	}
	if _, err := e.Candidate(); err == nil {
		t.Fatal("Candidate accepted an sa ipsec without profile")
	}
	// Still in configuration mode, where it was: fix and end.
	apply(t, e, [2]string{"profile gdoi-p2", "(gdoi-sa-ipsec)"}, [2]string{"end", ""})
}

// proves: O2
func TestEditExitEndAbort(t *testing.T) {
	e, _ := newEditor(t)
	apply(t, e,
		[2]string{"crypto gdoi group GET", "(config-gdoi-group)"},
		[2]string{"server local", "(gdoi-local-server)"},
		[2]string{"sa ipsec 1", "(gdoi-sa-ipsec)"},
		[2]string{"exit", "(gdoi-local-server)"},
		[2]string{"exit", "(config-gdoi-group)"},
		[2]string{"exit", "(config)"},
		[2]string{"! a comment", "(config)"},
		[2]string{"", "(config)"},
		[2]string{"exit", ""},
	)
	if e.Changed() {
		t.Fatal("entering modes changed the candidate")
	}
	// A command of an enclosing mode leaves the sub-modes, as on IOS.
	apply(t, e,
		[2]string{"crypto gdoi group GET", "(config-gdoi-group)"},
		[2]string{"server local", "(gdoi-local-server)"},
		[2]string{"sa ipsec 1", "(gdoi-sa-ipsec)"},
		[2]string{"sa ipsec 2", "(gdoi-sa-ipsec)"},
		[2]string{"profile gdoi-p2", "(gdoi-sa-ipsec)"},
		[2]string{"match address ipv4 tr2", "(gdoi-sa-ipsec)"},
		[2]string{"crypto ipsec profile gdoi-p3", "(ipsec-profile)"},
		[2]string{"set transform-set ts-gcm", "(ipsec-profile)"},
		[2]string{"ip access-list extended tr3", "(config-ext-nacl)"},
		[2]string{"permit ip any any", "(config-ext-nacl)"},
		[2]string{"crypto isakmp policy 20", "(config-isakmp)"},
		[2]string{"authentication pre-share", "(config-isakmp)"},
		[2]string{"crypto ipsec transform-set ts3 esp-gcm", "(cfg-crypto-trans)"},
		[2]string{"mode tunnel", "(cfg-crypto-trans)"},
		[2]string{"crypto map m 10 gdoi", "(config-crypto-map)"},
		[2]string{"interface eth1", "(config-if)"},
		[2]string{"crypto map m", "(config-if)"},
		[2]string{"ip access-list standard members", "(config-std-nacl)"},
		[2]string{"permit 10.0.0.0 0.255.255.255", "(config-std-nacl)"},
		[2]string{"crypto map m gdoi fail-close", "(crypto-map-fail-close)"},
		[2]string{"activate", "(crypto-map-fail-close)"},
		[2]string{"end", ""},
	)
	c := candidate(t, e)
	s := c.Group("GET").Server
	if len(s.SAs) != 2 || s.SAs[1].ProfileName != "gdoi-p2" || s.SAs[1].MatchACLName != "tr2" {
		t.Fatalf("sa ipsec 2 not added: %+v", s.SAs)
	}
	if c.Profile("gdoi-p3") == nil || c.ACL("tr3") == nil || len(c.ISAKMPPolicies) != 2 || c.TransformSet("ts3") == nil || len(c.Interfaces) != 2 {
		t.Fatalf("blocks not added:\n%s", e.Text())
	}
	if _, err := e.Apply("abort"); !errors.Is(err, ErrAbort) {
		t.Fatalf("abort: %v", err)
	}
}

// proves: O2
func TestEditNoForms(t *testing.T) {
	enter := [][2]string{{"crypto gdoi group GET", "(config-gdoi-group)"}, {"server local", "(gdoi-local-server)"}, {"sa ipsec 1", "(gdoi-sa-ipsec)"}}
	for _, tc := range []struct {
		name  string
		steps [][2]string
		check func(c *Config) bool
	}{
		{"match address", append(enter[:3:3], [2]string{"no match address ipv4 tr", "(gdoi-sa-ipsec)"}, [2]string{"match address ipv4 tr2", "(gdoi-sa-ipsec)"}),
			func(c *Config) bool { return c.Group("GET").Server.SAs[0].MatchACLName == "tr2" }},
		{"no replay", append(enter[:3:3], [2]string{"no replay", "(gdoi-sa-ipsec)"}),
			func(c *Config) bool { return c.Group("GET").Server.SAs[0].Replay == ReplayNone }},
		{"no sa receive-only", append(enter[:2:2], [2]string{"no sa receive-only", "(gdoi-local-server)"}),
			func(c *Config) bool { return !c.Group("GET").Server.ReceiveOnly }},
		{"no rekey lifetime: default", append(enter[:2:2], [2]string{"no rekey lifetime", "(gdoi-local-server)"}),
			func(c *Config) bool { return c.Group("GET").Server.RekeyLifetime == DefaultRekeyLifetime }},
		{"no rekey lifetime seconds N", append(enter[:2:2], [2]string{"no rekey lifetime seconds 7200", "(gdoi-local-server)"}),
			func(c *Config) bool { return c.Group("GET").Server.RekeyLifetime == DefaultRekeyLifetime }},
		{"no ACE by meaning", [][2]string{{"ip access-list extended tr", "(config-ext-nacl)"}, {"no deny udp any eq 848 any eq 848", "(config-ext-nacl)"}},
			func(c *Config) bool {
				return len(c.ACL("tr").Entries) == 1 && c.ACL("tr").Entries[0].Action == "permit"
			}},
		{"no ACE by sequence", [][2]string{{"ip access-list extended tr", "(config-ext-nacl)"}, {"no 10", "(config-ext-nacl)"}},
			func(c *Config) bool { return len(c.ACL("tr").Entries) == 1 && c.ACL("tr").Entries[0].Seq == 20 }},
		{"no ACE written differently", [][2]string{{"ip access-list extended tr", "(config-ext-nacl)"}, {"no 10 permit ip 10.0.0.0 0.255.255.255 10.0.0.0 0.255.255.255", "(config-ext-nacl)"}},
			func(c *Config) bool { return len(c.ACL("tr").Entries) == 1 }},
		{"no sa ipsec from inside it", append(enter[:3:3], [2]string{"sa ipsec 2", "(gdoi-sa-ipsec)"}, [2]string{"profile gdoi-p", "(gdoi-sa-ipsec)"}, [2]string{"match address ipv4 tr", "(gdoi-sa-ipsec)"},
			[2]string{"no sa ipsec 1", "(gdoi-local-server)"}),
			func(c *Config) bool { s := c.Group("GET").Server; return len(s.SAs) == 1 && s.SAs[0].Seq == 2 }},
		{"no crypto gdoi group and no crypto map", [][2]string{{"no crypto map m 10", "(config)"}, {"no crypto map m 20", "(config)"},
			{"interface eth0", "(config-if)"}, {"no crypto map m", "(config-if)"}, {"no crypto gdoi group GM1", "(config)"}},
			func(c *Config) bool {
				return c.Group("GM1") == nil && len(c.CryptoMaps) == 0 && c.Interfaces[0].CryptoMap == ""
			}},
		{"no crypto isakmp key", [][2]string{{"crypto gdoi group GET", "(config-gdoi-group)"}, {"no crypto isakmp key k2 address 10.9.0.0 255.255.0.0", "(config)"}},
			func(c *Config) bool { return len(c.ISAKMPKeys) == 1 && c.ISAKMPKeys[0].Key == "k" }},
		{"no crypto gdoi group from inside", append(enter[:3:3], [2]string{"crypto gdoi group GM1", "(config-gdoi-group)"}, [2]string{"no crypto gdoi group GM1", "(config)"},
			[2]string{"no crypto map m", "(config)"}),
			func(c *Config) bool { return c.Group("GM1") == nil && c.Group("GET") != nil && len(c.CryptoMaps) == 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newEditor(t)
			apply(t, e, tc.steps...)
			// Some removals leave references dangling (checked at end):
			// look at the candidate as parsed, unresolved.
			c, errs, _ := e.scan(e.Text(), 0)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if !tc.check(c) {
				t.Fatalf("not applied:\n%s", e.Text())
			}
		})
	}

	e, _ := newEditor(t)
	apply(t, e, [2]string{"crypto map m gdoi fail-close", "(crypto-map-fail-close)"})
	refuse(t, e, "no crypto map m", `Ambiguous: "no crypto map m" matches several commands (crypto map m 10 gdoi; crypto map m 20 gdoi; crypto map m gdoi fail-close)`)
	refuse(t, e, "no crypto gdoi group get", "Nothing to remove")
	apply(t, e, [2]string{"ip access-list extended tr", "(config-ext-nacl)"})
	refuse(t, e, "no permit ip host 1.2.3.4 any", "Nothing to remove")
	refuse(t, e, "no permit ip host 1.2.3 any", `access-list host "1.2.3" is not an IPv4 address`)
}

// proves: O2
func TestEditRebase(t *testing.T) {
	e, _ := newEditor(t)
	apply(t, e, [2]string{"crypto gdoi group GET", "(config-gdoi-group)"},
		[2]string{"server local", "(gdoi-local-server)"},
		[2]string{"sa ipsec 1", "(gdoi-sa-ipsec)"},
		[2]string{"no profile gdoi-p", "(gdoi-sa-ipsec)"},
		[2]string{"profile gdoi-p2", "(gdoi-sa-ipsec)"})

	// Someone else committed another change meanwhile.
	other, _ := newEditor(t)
	apply(t, other, [2]string{"hostname KS2", "(config)"}, [2]string{"end", ""})
	committed := candidate(t, other)
	if err := e.Rebase(committed); err != nil {
		t.Fatal(err)
	}
	if e.Base() != committed || e.Prompt() != "(gdoi-sa-ipsec)" {
		t.Fatalf("rebased: base %p prompt %q", e.Base(), e.Prompt())
	}
	c := candidate(t, e)
	if c.Hostname != "KS2" || c.Group("GET").Server.SAs[0].ProfileName != "gdoi-p2" {
		t.Fatalf("rebase lost a change:\n%s", e.Text())
	}

	// A change that no longer applies is reported and nothing changes.
	gone, _ := newEditor(t)
	apply(t, gone, [2]string{"no crypto ipsec profile gdoi-p", "(config)"}, [2]string{"crypto gdoi group GET", "(config-gdoi-group)"},
		[2]string{"server local", "(gdoi-local-server)"}, [2]string{"sa ipsec 1", "(gdoi-sa-ipsec)"}, [2]string{"profile gdoi-p2", "(gdoi-sa-ipsec)"}, [2]string{"end", ""})
	before := e.Text()
	if err := e.Rebase(candidate(t, gone)); err == nil || !strings.Contains(err.Error(), `"no profile gdoi-p"`) {
		t.Fatalf("rebase over a removed line: %v", err)
	}
	if e.Text() != before {
		t.Fatal("a failed rebase changed the candidate")
	}
}

// header must write a block's line exactly as Render does, since the
// editor finds its blocks in the rendering by it.
func TestEditHeadersMatchRender(t *testing.T) {
	src := strings.Replace(editKS, "  sa receive-only\n", "  sa receive-only\n  address ipv4 10.0.0.1\n  redundancy\n   local priority 10\n   peer address ipv4 10.0.0.2\n", 1)
	c, err := Parse("testdata/edit.conf", []byte(src+"crypto map m gdoi fail-close\n activate\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Render()
	var objs []any
	for _, x := range c.ISAKMPPolicies {
		objs = append(objs, x)
	}
	for _, x := range c.TransformSets {
		objs = append(objs, x)
	}
	for _, x := range c.Profiles {
		objs = append(objs, x)
	}
	for _, x := range c.ACLs {
		objs = append(objs, x)
	}
	for _, x := range c.Groups {
		objs = append(objs, x)
		if x.Server != nil {
			objs = append(objs, x.Server)
			if x.Server.Redundancy != nil {
				objs = append(objs, x.Server.Redundancy)
			}
			for _, s := range x.Server.SAs {
				objs = append(objs, s)
			}
		}
	}
	for _, x := range c.CryptoMaps {
		objs = append(objs, x)
	}
	for _, x := range c.FailClose {
		objs = append(objs, x)
	}
	for _, x := range c.Interfaces {
		objs = append(objs, x)
	}
	for _, o := range objs {
		h := header(o)
		found := false
		for _, l := range strings.Split(r, "\n") {
			if strings.TrimLeft(l, " ") == h {
				found = true
			}
		}
		if !found || h == "" {
			t.Errorf("header %q (%T) is not a line of the rendering", h, o)
		}
	}
	e := NewEditor(c)
	apply(t, e, [2]string{"crypto gdoi group GET", "(config-gdoi-group)"}, [2]string{"server local", "(gdoi-local-server)"},
		[2]string{"redundancy", "(gdoi-coop-ks-config)"}, [2]string{"local priority 20", "(gdoi-coop-ks-config)"}, [2]string{"end", ""})
	if got := candidate(t, e).Group("GET").Server.Redundancy.LocalPriority; got != 20 {
		t.Errorf("local priority %d", got)
	}
	e = NewEditor(c)
	if got := strings.Join(e.Commands(), " "); got != "abort access-list crypto do end exit groupvpn hostname interface ip logging no" {
		t.Errorf("Commands in (config): %v", got)
	}
	apply(t, e, [2]string{"crypto gdoi group GET", "(config-gdoi-group)"}, [2]string{"server local", "(gdoi-local-server)"}, [2]string{"sa ipsec 1", "(gdoi-sa-ipsec)"})
	if got := strings.Join(e.Commands(), " "); got != "abort do end exit match no profile replay" {
		t.Errorf("Commands in (gdoi-sa-ipsec): %v", got)
	}
}

// Every mode of the parser has its IOS prompt.
func TestEditEveryModeHasAPrompt(t *testing.T) {
	v := reflect.ValueOf(buildModes()).Elem()
	for i := range v.NumField() {
		m := (*mode)(v.Field(i).UnsafePointer())
		if _, ok := modePrompts[m.name]; !ok {
			t.Errorf("mode %q (%s) has no prompt in modePrompts", m.name, v.Type().Field(i).Name)
		}
	}
}
