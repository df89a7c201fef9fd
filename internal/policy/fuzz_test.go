package policy

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// fuzzName is what fuzz inputs are parsed as: relative key and certificate
// paths resolve in testdata/.
const fuzzName = "testdata/fuzz.conf"

var (
	// mdFence is a fenced block of a Markdown file (any language).
	mdFence = regexp.MustCompile("(?s)```[^\n]*\n(.*?)```")
	// rawString is a Go raw string literal.
	rawString = regexp.MustCompile("(?s)`([^`]*)`")
)

// configSeeds returns every example configuration of the project: the
// testdata files, the fenced blocks of docs/*.md, and the configurations
// the tests of every package write (Go raw strings that hold an IOS
// configuration), plus the inputs of the crashes found so far.
func configSeeds(t testing.TB) []string {
	var seeds []string
	add := func(s string) {
		if strings.Contains(s, "crypto ") || strings.Contains(s, "ip access-list") || strings.Contains(s, "interface ") {
			seeds = append(seeds, s)
		}
	}
	files, _ := filepath.Glob("testdata/*.conf")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, string(b))
	}
	docs, _ := filepath.Glob("../../docs/*.md")
	for _, f := range docs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdFence.FindAllStringSubmatch(string(b), -1) {
			add(m[1])
		}
	}
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata" && path != "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range rawString.FindAllStringSubmatch(string(b), -1) {
			if strings.Contains(m[1], "crypto gdoi group") || strings.Contains(m[1], "crypto isakmp") {
				add(m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seeds) < 10 {
		t.Fatalf("only %d seed configurations found", len(seeds))
	}
	return append(seeds, kitchenSink, ksBase, gmBase, ksBase+crashTransforms, "crypto ipsec transform-set t1 ah-hmac\n")
}

// crashTransforms are transform sets that panicked the parser (issue 11
// item 3): a transform with the prefix and the -hmac suffix and nothing
// between them.
const crashTransforms = "crypto ipsec transform-set t1 esp-hmac\ncrypto ipsec transform-set t2 ah-hmac\ncrypto ipsec transform-set t3 esp-gcm ah-hmac\n"

// FuzzParseConfig: no input panics the parser (not even into its
// recovered "internal error"); every error is one line naming the file and
// a line of the input; what parses renders (show running-config) and
// parses back to the same model, and renders the same again.
//
// proves: O1 (issue 11 items 3 and deliver: fuzz target for the configuration parser)
func FuzzParseConfig(f *testing.F) {
	for _, s := range configSeeds(f) {
		f.Add(s)
	}
	f.Add(ksPaste) // issue 14 item 2: pasted IOS configurations, with notes
	f.Add(gmPaste)
	f.Add(gmPaste + "access-list 101 remark x\naccess-list 101 permit ip 10.1.0.0 0.0.255.255 any\naccess-list 5 deny any\n")
	// issue 17: G-IKEv2 groups, every crypto ikev2 block, notes and refusals.
	f.Add(gikev2KS)
	f.Add(gikev2GM + "crypto ikev2 dpd 10 2 on-demand\ncrypto ikev2 proposal p\n encryption aes-cbc-128 aes-cbc-256\n integrity sha512 sha256\n group 21 14\ncrypto ikev2 policy pol\n match fvrf any\n match address local 10.0.0.2\n proposal p\ncrypto ikev2 keyring kr\n peer x\n  address 10.9.0.0 255.255.0.0\n  identity fqdn x.example\n  pre-shared-key local a\n  pre-shared-key remote a\ncrypto ikev2 profile ks\n match identity remote fqdn domain example\n identity local address 10.0.0.9\n lifetime 600\n")
	f.Add(strings.Replace(gikev2KS, "  gikev2 members\n", "  gikev2 nope\n  redundancy\n", 1) + " client protocol gikev2\ncrypto ikev2 profile members\n authentication remote eap\n keyring aaa x\n")
	f.Fuzz(func(t *testing.T, src string) {
		checkParse(t, src)
	})
}

// checkParse is FuzzParseConfig's property, for the regression tests too.
func checkParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse(fuzzName, []byte(src))
	if err != nil {
		if c != nil {
			t.Fatal("Parse returned a Config with errors")
		}
		var list ErrorList
		if !errors.As(err, &list) || len(list) == 0 {
			t.Fatalf("error %T is not a non-empty ErrorList: %v", err, err)
		}
		lines := strings.Count(src, "\n") + 1
		if len(list) > MaxErrors+1 {
			t.Fatalf("%d errors, more than MaxErrors+1", len(list))
		}
		for _, e := range list {
			if e.File != fuzzName || e.Line < 1 || e.Line > lines {
				t.Fatalf("error without a file:line of the input (%d lines): %q (file %q line %d)", lines, e.Error(), e.File, e.Line)
			}
			if strings.Contains(e.Msg, "internal error") {
				t.Fatalf("the parser panicked: %s", e.Error())
			}
			if strings.ContainsAny(e.Msg, "\n\r") || e.Msg == "" {
				t.Fatalf("error message is not one line: %q", e.Msg)
			}
		}
		return nil
	}
	out := c.Render()
	c2, err := Parse(fuzzName, []byte(out))
	if err != nil {
		t.Fatalf("the rendering of an accepted configuration is refused: %v\n--- input:\n%s\n--- rendered:\n%s", err, src, out)
	}
	if out2 := c2.Render(); out2 != out {
		t.Fatalf("Render is not stable:\n%s\n---\n%s", out, out2)
	}
	c3, _ := Parse(fuzzName, []byte(src)) // comparable strips c's fields
	x, y := comparable(t, c3, c2)
	if !reflect.DeepEqual(x, y) {
		t.Fatalf("parse(Render(c)) != c\n--- input:\n%s\n--- rendered:\n%s", src, out)
	}
	return c
}

// proves: O1 (issue 11 item 3) — `crypto ipsec transform-set t1 esp-hmac`
// (or ah-hmac) panicked the parser: config check printed a stack trace and
// a reload killed the key server. Now each is a file:line error.
func TestParseTransformHMACWithoutAlgorithmIsAnError(t *testing.T) {
	for _, tr := range []string{"esp-hmac", "ah-hmac", "esp-aes esp-hmac", "esp-gcm ah-hmac", "ESP-HMAC", "esp--hmac"} {
		src := "crypto ipsec transform-set t1 " + tr + "\n"
		checkParse(t, src)
		mustFail(t, src, `1: crypto ipsec transform-set t1: transform "`+strings.Fields(tr)[len(strings.Fields(tr))-1]+`" is not supported (accepted: esp-aes, esp-gcm, esp-gmac [128|192|256], esp-sha-hmac, esp-sha256-hmac, esp-sha384-hmac, esp-sha512-hmac, ah-sha-hmac, ah-sha256-hmac, ah-sha384-hmac, ah-sha512-hmac)`)
	}
	checkParse(t, ksBase+crashTransforms)
}

// proves: O1 (issue 11 item 3) — a key or certificate path that names a
// device or FIFO is refused at its line instead of being read forever.
func TestParseKeyFileMustBeRegularAndBounded(t *testing.T) {
	mustFail(t, "crypto pki ca file /dev/zero\n", `1: crypto pki ca: cannot read /dev/zero: not a regular file (Dc---------)`)
	big := filepath.Join(t.TempDir(), "big.pem")
	if err := os.WriteFile(big, make([]byte, MaxKeyFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	mustFail(t, "crypto pki key file "+big+"\n", `1: crypto pki key: cannot read `+big+`: larger than 1048576 octets`)
}

// proves: O1 (issue 11 item 3) — the last line of defence: a panic in a
// command becomes a refused configuration with file:line, not a crash.
func TestParsePanicBecomesFileLineError(t *testing.T) {
	p := newParser("x.conf", ".")
	p.m.global.cmds = append(p.m.global.cmds, &cmd{kw: []string{"boom"}, syntax: "boom", max: -1,
		run: func(p *parser, _ any, a []string) { _ = a[5] }})
	p.run([]string{"hostname h", "boom"}, 0, true)
	if len(p.errs) != 1 || p.errs[0].Line != 2 || !strings.HasPrefix(p.errs[0].Error(), `x.conf:2: internal error while parsing "boom": runtime error: index out of range`) {
		t.Fatalf("errors: %v", p.errs)
	}
}

// FuzzEditorApply: configure terminal lines (from the control socket) never
// panic the editor; a refused line leaves the candidate and the mode as
// they were and says why ("% ..."); an accepted line leaves a candidate in
// canonical form; an accepted end leaves one that parses as a file and
// renders to the same text.
//
// proves: O2 (issue 11 item 3 and deliver: the configuration parser behind configure terminal)
func FuzzEditorApply(f *testing.F) {
	f.Add("crypto gdoi group GET\nserver local\nsa ipsec 1\nno profile gdoi-p\nprofile gdoi-p2\nend")
	f.Add("no crypto gdoi group GET\nend")
	f.Add("crypto gdoi group GET\nserver local\naddress ipv4 10.0.0.1\nredundancy\nlocal priority 50\npeer address ipv4 10.0.0.9\npeer address ipv4 10.0.0.9\ntimers dead 90\nno timers dead\ntimers announce 30\nno peer address ipv4 10.0.0.9\nend") // issue 16
	f.Add("ip access-list extended FC\n deny 89 any any\ncrypto map m gdoi fail-close\n match address FC\n activate\nexit\ncrypto map m gdoi fail-close\nno match address FC\nend")
	f.Add("crypto ipsec transform-set t1 esp-hmac\nexit\nabort")
	f.Add("ip access-list extended tr\n no 10\n 5 permit udp any eq 848 host 239.1.1.1 eq 848\nexit\nno crypto isakmp key k address 0.0.0.0 0.0.0.0\nend")
	f.Add("crypto map m 10 gdoi\nno set group\nset group GET\ninterface eth9\ncrypto map m\nno replay\nend")
	f.Add("crypto ikev2 proposal p\nencryption aes-gcm-256\nprf sha256\ngroup 19\ncrypto ikev2 keyring kr\npeer ks\naddress 10.0.0.1\npre-shared-key k\nno address\nidentity fqdn ks.example\ncrypto ikev2 profile pr\nauthentication local pre-share\nauthentication remote pre-share\nkeyring local kr\ncrypto gdoi group GET\nserver local\ngikev2 pr\nno gikev2\nclient protocol gikev2 pr\nend") // issue 17
	for _, s := range configSeeds(f)[:5] {
		f.Add(s + "\nend")
	}
	running, err := Parse(fuzzName, []byte(editKS))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, session string) {
		ed := NewEditor(running)
		lines := strings.Split(session, "\n")
		if len(lines) > 64 {
			lines = lines[:64] // each line reparses the candidate
		}
		for _, l := range lines {
			text, path := ed.Text(), ed.Path()
			prompt, err := ed.Apply(l)
			switch {
			case errors.Is(err, ErrAbort):
				return
			case err != nil:
				if strings.Contains(err.Error(), "internal error") {
					t.Fatalf("%q: the editor panicked: %v", l, err)
				}
				var ce *CommitError
				if !strings.HasPrefix(err.Error(), "% ") && !errors.As(err, &ce) {
					t.Fatalf("%q: refusal without %%: %v", l, err)
				}
				if ed.Text() != text || !reflect.DeepEqual(ed.Path(), path) {
					t.Fatalf("%q: refused, but the candidate or the mode changed", l)
				}
			case prompt == "":
				c, err := ed.Candidate()
				if err != nil {
					t.Fatalf("end accepted a candidate that does not parse: %v", err)
				}
				if c.Render() != ed.Text() {
					t.Fatalf("the committed candidate renders differently:\n%s\n---\n%s", c.Render(), ed.Text())
				}
				return
			default:
				if c, errs, _ := ed.scan(ed.Text(), 0); len(errs) > 0 || c.Render() != ed.Text() {
					t.Fatalf("%q: the candidate is not canonical: %v", l, errs)
				}
			}
		}
	})
}
