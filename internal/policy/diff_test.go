package policy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// diffBase is a self-contained key server (pre-shared keys only) with one
// group and one sa ipsec; its rekey keys are written by diffDir.
const diffBase = `hostname ks1
crypto isakmp policy 10
 encryption aes 256
 hash sha256
 authentication pre-share
 group 14
crypto isakmp key secret address 10.0.0.0 255.0.0.0
crypto key import ec REKEY file rekey.pem
crypto key import ec REKEY2 file rekey2.pem
ip access-list extended traffic
 10 permit ip 10.1.0.0 0.0.255.255 10.1.0.0 0.0.255.255
ip access-list extended traffic2
 10 permit ip 10.2.0.0 0.0.255.255 10.2.0.0 0.0.255.255
ip access-list extended rekey-acl
 permit udp host 10.0.0.1 eq 848 host 239.192.1.1 eq 848
crypto ipsec transform-set ts-cbc esp-aes 128 esp-sha256-hmac
crypto ipsec transform-set ts-gcm esp-gcm 256
crypto ipsec profile gdoi-p
 set transform-set ts-cbc
 set security-association lifetime seconds 3600
crypto ipsec profile gdoi-p2
 set transform-set ts-gcm
 set security-association lifetime seconds 7200
crypto gdoi group GET
 identity number 1234
 server local
  rekey algorithm aes 128
  rekey lifetime seconds 86400
  rekey authentication mypubkey ec REKEY
  rekey address ipv4 rekey-acl
  address ipv4 10.0.0.1
  sa ipsec 1
   profile gdoi-p
   match address ipv4 traffic
   replay counter window-size 64
end
`

// writeECKey writes a new P-256 key (SEC 1 PEM) to path and returns its
// public key.
func writeECKey(t *testing.T, path string) crypto.PublicKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

// diffDir makes a directory with rekey.pem and rekey2.pem and returns it
// with the fingerprints of the two keys.
func diffDir(t *testing.T) (dir, fp1, fp2 string) {
	t.Helper()
	dir = t.TempDir()
	fp1 = fingerprint(writeECKey(t, filepath.Join(dir, "rekey.pem")))
	fp2 = fingerprint(writeECKey(t, filepath.Join(dir, "rekey2.pem")))
	return dir, fp1, fp2
}

// edit applies replacements (old, new, old, new, ...) to src; each old
// string must occur exactly once.
func edit(t *testing.T, src string, pairs ...string) string {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		if n := strings.Count(src, pairs[i]); n != 1 {
			t.Fatalf("edit: %q occurs %d times", pairs[i], n)
		}
		src = strings.Replace(src, pairs[i], pairs[i+1], 1)
	}
	return src
}

func parseIn(t *testing.T, dir, src string) *Config {
	t.Helper()
	c, err := Parse(filepath.Join(dir, "ks.conf"), []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v\n--- input:\n%s", err, src)
	}
	return c
}

type wantChange struct {
	kind     ChangeKind
	sa       int
	rekey    bool
	from, to string
}

func checkChanges(t *testing.T, got []Change, want []wantChange) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d changes, want %d:\n%s", len(got), len(want), FormatChanges(got))
	}
	for i, w := range want {
		g := got[i]
		if g.Group != "GET" || g.Kind != w.kind || g.SA != w.sa || g.Rekey != w.rekey || g.From != w.from || g.To != w.to {
			t.Errorf("change %d:\n  got  %s\n  want %s sa %d %s -> %s (rekey %v)", i, g, w.kind, w.sa, w.from, w.to, w.rekey)
		}
		if g.Effect == "" || g.Effect != g.Kind.Effect() {
			t.Errorf("change %d: effect %q", i, g.Effect)
		}
	}
}

// TestDiffTable1 has one case per row of table 1 of seed 001 (and the
// rows Diff adds): one edit of the base configuration, and the change
// Diff must see.
//
// proves: P7
func TestDiffTable1(t *testing.T) {
	dir, fp1, fp2 := diffDir(t)
	const (
		replay  = "   replay counter window-size 64\n"
		addr    = "  address ipv4 10.0.0.1\n"
		noRepl  = "   no replay\n"
		tbar5   = "   replay time window-size 5\n"
		sa2     = "  sa ipsec 2\n   profile gdoi-p2\n   match address ipv4 traffic2\n"
		sa1Tail = "   match address ipv4 traffic\n" + replay
	)
	cases := []struct {
		name     string
		old, new []string // edits of diffBase
		want     []wantChange
	}{
		{"TEK SA lifetime", nil,
			[]string{" set transform-set ts-cbc\n set security-association lifetime seconds 3600", " set transform-set ts-cbc\n set security-association lifetime seconds 7200"},
			[]wantChange{{TEKLifetime, 1, false, "3600 s", "7200 s"}}},
		{"TEK transform set contents", nil,
			[]string{"ts-cbc esp-aes 128", "ts-cbc esp-aes 256"},
			[]wantChange{{TEKTransformSet, 1, true, "esp-aes 128 esp-sha256-hmac", "esp-aes 256 esp-sha256-hmac"}}},
		{"TEK transform set of the profile", nil,
			[]string{" set transform-set ts-cbc\n", " set transform-set ts-gcm\n"},
			[]wantChange{{TEKTransformSet, 1, true, "ts-cbc (esp-aes 128 esp-sha256-hmac)", "ts-gcm (esp-gcm 256)"}}},
		{"TEK transform set mode", nil,
			[]string{"ts-gcm esp-gcm 256\n", "ts-gcm esp-gcm 256\ncrypto ipsec transform-set ts-cbc esp-aes 128 esp-sha256-hmac\n mode transport\n"},
			[]wantChange{{TEKTransformSet, 1, true, "esp-aes 128 esp-sha256-hmac", "esp-aes 128 esp-sha256-hmac mode transport"}}},
		{"TEK IPsec profile", nil,
			[]string{"   profile gdoi-p\n", "   profile gdoi-p2\n"},
			[]wantChange{{TEKProfile, 1, true, "gdoi-p", "gdoi-p2"}}},
		{"TEK matching ACL name", nil,
			[]string{"match address ipv4 traffic\n", "match address ipv4 traffic2\n"},
			[]wantChange{{TEKMatchACL, 1, true, "traffic", "traffic2"}}},
		{"TEK matching ACL entries", nil,
			[]string{" 10 permit ip 10.1.0.0 0.0.255.255 10.1.0.0 0.0.255.255\n", " 10 permit ip 10.1.0.0 0.0.255.255 10.1.0.0 0.0.255.255\n 20 deny udp any eq 848 any eq 848\n"},
			[]wantChange{{TEKMatchACL, 1, true,
				"traffic: 10 permit ip 10.1.0.0 0.0.255.255 10.1.0.0 0.0.255.255",
				"traffic: 10 permit ip 10.1.0.0 0.0.255.255 10.1.0.0 0.0.255.255; 20 deny udp any eq 848 any eq 848"}}},
		// proves: E3 — a deny entry put before the permit it overlaps is
		// a matching-ACL change like any other (it reaches GMs with the
		// next rekey, as the deny entries travel now).
		{"TEK matching ACL deny before the permit", nil,
			[]string{" 10 permit ip 10.1.0.0 0.0.255.255 10.1.0.0 0.0.255.255\n", " 5 deny 89 any any\n 10 permit ip 10.1.0.0 0.0.255.255 10.1.0.0 0.0.255.255\n"},
			[]wantChange{{TEKMatchACL, 1, true,
				"traffic: 10 permit ip 10.1.0.0 0.0.255.255 10.1.0.0 0.0.255.255",
				"traffic: 5 deny 89 any any; 10 permit ip 10.1.0.0 0.0.255.255 10.1.0.0 0.0.255.255"}}},
		{"TEK replay counter enabled", []string{replay, noRepl}, nil,
			[]wantChange{{TEKReplayEnabled, 1, true, "none", "counter window-size 64"}}},
		{"TEK replay counter value", nil, []string{"counter window-size 64", "counter window-size 128"},
			[]wantChange{{TEKReplayValue, 1, false, "counter window-size 64", "counter window-size 128"}}},
		{"TEK replay counter disabled", nil, []string{replay, noRepl},
			[]wantChange{{TEKReplayDisabled, 1, true, "counter window-size 64", "none"}}},
		{"TEK TBAR enabled", []string{replay, noRepl}, []string{replay, tbar5},
			[]wantChange{{TEKTBAREnabled, 1, true, "none", "time window-size 5 s"}}},
		{"TEK TBAR window", []string{replay, tbar5}, []string{replay, "   replay time window-size 10\n"},
			[]wantChange{{TEKTBARWindow, 1, false, "time window-size 5 s", "time window-size 10 s"}}},
		{"TEK TBAR disabled", []string{replay, tbar5}, []string{replay, noRepl},
			[]wantChange{{TEKTBARDisabled, 1, true, "time window-size 5 s", "none"}}},
		{"TEK receive-only enabled", nil, []string{addr, addr + "  sa receive-only\n"},
			[]wantChange{{TEKReceiveOnlyOn, 0, true, "off", "on"}}},
		{"TEK receive-only disabled", []string{addr, addr + "  sa receive-only\n"}, nil,
			[]wantChange{{TEKReceiveOnlyOff, 0, true, "on", "off"}}},
		{"TEK sa ipsec added", nil, []string{sa1Tail, sa1Tail + sa2},
			[]wantChange{{TEKSAAdded, 2, true, "none", "profile gdoi-p2, match address traffic2"}}},
		{"TEK sa ipsec removed", []string{sa1Tail, sa1Tail + sa2}, nil,
			[]wantChange{{TEKSARemoved, 2, true, "profile gdoi-p2, match address traffic2", "none"}}},
		{"KEK SA lifetime", nil, []string{"rekey lifetime seconds 86400", "rekey lifetime seconds 43200"},
			[]wantChange{{KEKLifetime, 0, false, "86400 s", "43200 s"}}},
		{"KEK authentication key label", nil, []string{"mypubkey ec REKEY\n", "mypubkey ec REKEY2\n"},
			[]wantChange{{KEKAuthentication, 0, true, "ec REKEY (key " + fp1 + ")", "ec REKEY2 (key " + fp2 + ")"}}},
		{"KEK authentication key removed", nil, []string{"  rekey authentication mypubkey ec REKEY\n  rekey address ipv4 rekey-acl\n", ""},
			[]wantChange{{KEKAuthentication, 0, true, "ec REKEY (key " + fp1 + ")", "none"}}},
		{"KEK cipher algorithm", nil, []string{"rekey algorithm aes 128", "rekey algorithm aes 256"},
			[]wantChange{{KEKCipher, 0, true, "aes 128", "aes 256"}}},
		{"counter replay to TBAR is two changes", nil, []string{replay, tbar5},
			[]wantChange{
				{TEKReplayDisabled, 1, true, "counter window-size 64", "time window-size 5 s"},
				{TEKTBAREnabled, 1, true, "counter window-size 64", "time window-size 5 s"},
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			old := parseIn(t, dir, edit(t, diffBase, tc.old...))
			nw := parseIn(t, dir, edit(t, diffBase, tc.new...))
			got := Diff(old, nw)
			checkChanges(t, got, tc.want)
			wantRekey := false
			for _, w := range tc.want {
				wantRekey = wantRekey || w.rekey
			}
			if NeedsRekey(got) != wantRekey {
				t.Errorf("NeedsRekey = %v, want %v", NeedsRekey(got), wantRekey)
			}
		})
	}
}

// TestDiffKeyFileChanged: the same label and path with another key in
// the file is an authentication key change (public keys are compared).
//
// proves: P7
func TestDiffKeyFileChanged(t *testing.T) {
	dir, fp1, _ := diffDir(t)
	old := parseIn(t, dir, diffBase)
	fp3 := fingerprint(writeECKey(t, filepath.Join(dir, "rekey.pem")))
	nw := parseIn(t, dir, diffBase)
	checkChanges(t, Diff(old, nw), []wantChange{{KEKAuthentication, 0, true, "ec REKEY (key " + fp1 + ")", "ec REKEY (key " + fp3 + ")"}})
}

// TestDiffNoChange: identical configurations, and edits that are not
// group policy (hostname, phase 1, pre-shared keys, ACL renumbering, KS
// address, an unused key), give no change.
//
// proves: P7
func TestDiffNoChange(t *testing.T) {
	dir, _, _ := diffDir(t)
	base := parseIn(t, dir, diffBase)
	if got := Diff(base, parseIn(t, dir, diffBase)); len(got) != 0 {
		t.Fatalf("identical configurations:\n%s", FormatChanges(got))
	}
	if got := Diff(base, base); got != nil {
		t.Fatalf("same configuration: %v", got)
	}
	other := parseIn(t, dir, edit(t, diffBase,
		"hostname ks1", "hostname ks2",
		"crypto isakmp key secret", "crypto isakmp key other",
		"encryption aes 256", "encryption aes 128",
		" 10 permit ip 10.1.0.0", " 100 permit ip 10.1.0.0",
		"address ipv4 10.0.0.1\n", "address ipv4 10.0.0.2\n",
		"crypto key import ec REKEY2 file rekey2.pem\n", "",
		"rekey-acl\n permit udp host 10.0.0.1", "rekey-acl\n permit udp host 10.0.0.2",
	))
	if got := Diff(base, other); len(got) != 0 {
		t.Fatalf("non-policy edits:\n%s", FormatChanges(got))
	}
	// Without rekey authentication there is no KEK: its lifetime and
	// cipher do not reach the GMs.
	noRekey := edit(t, diffBase, "  rekey authentication mypubkey ec REKEY\n  rekey address ipv4 rekey-acl\n", "")
	a := parseIn(t, dir, noRekey)
	b := parseIn(t, dir, edit(t, noRekey, "rekey algorithm aes 128", "rekey algorithm aes 256", "rekey lifetime seconds 86400", "rekey lifetime seconds 3600"))
	if got := Diff(a, b); len(got) != 0 {
		t.Fatalf("KEK edits without rekeys:\n%s", FormatChanges(got))
	}
	if got := FormatChanges(nil); got != "No pending policy changes\n" {
		t.Fatalf("FormatChanges(nil) = %q", got)
	}
}

// TestDiffMultiple: several edits at once are all reported, in order (sa
// ipsec by number, then receive-only, then the KEK), and a group that is
// only in the new configuration is not compared.
//
// proves: P7
func TestDiffMultiple(t *testing.T) {
	dir, _, _ := diffDir(t)
	sa1Tail := "   match address ipv4 traffic\n   replay counter window-size 64\n"
	old := parseIn(t, dir, edit(t, diffBase, sa1Tail, sa1Tail+"  sa ipsec 2\n   profile gdoi-p2\n   match address ipv4 traffic2\n"))
	nw := parseIn(t, dir, edit(t, diffBase,
		sa1Tail, sa1Tail+"  sa ipsec 2\n   profile gdoi-p2\n   match address ipv4 traffic2\n   replay counter window-size 256\n",
		" set transform-set ts-cbc\n set security-association lifetime seconds 3600", " set transform-set ts-cbc\n set security-association lifetime seconds 1800",
		"ts-cbc esp-aes 128", "ts-cbc esp-aes 192",
		"   replay counter window-size 64\n", "   replay time window-size 20\n",
		"  address ipv4 10.0.0.1\n", "  address ipv4 10.0.0.1\n  sa receive-only\n",
		"rekey lifetime seconds 86400", "rekey lifetime seconds 7200",
		"rekey algorithm aes 128", "rekey algorithm aes 192",
		"end\n", "crypto gdoi group NEW\n identity number 99\n server local\n  sa ipsec 1\n   profile gdoi-p\n   match address ipv4 traffic\nend\n",
	))
	got := Diff(old, nw)
	checkChanges(t, got, []wantChange{
		{TEKLifetime, 1, false, "3600 s", "1800 s"},
		{TEKTransformSet, 1, true, "esp-aes 128 esp-sha256-hmac", "esp-aes 192 esp-sha256-hmac"},
		{TEKReplayDisabled, 1, true, "counter window-size 64", "time window-size 20 s"},
		{TEKTBAREnabled, 1, true, "counter window-size 64", "time window-size 20 s"},
		{TEKReplayValue, 2, false, "counter window-size 64", "counter window-size 256"},
		{TEKReceiveOnlyOn, 0, true, "off", "on"},
		{KEKLifetime, 0, false, "86400 s", "7200 s"},
		{KEKCipher, 0, true, "aes 128", "aes 192"},
	})
	if !NeedsRekey(got) {
		t.Error("NeedsRekey = false")
	}
	if NeedsRekey([]Change{got[0], got[4], got[6]}) {
		t.Error("NeedsRekey of lifetime and window changes = true")
	}
}

// TestFormatChanges: the pending changes of show crypto gdoi ks policy.
//
// proves: P7
func TestFormatChanges(t *testing.T) {
	mk := func(g string, k ChangeKind, sa int, from, to string) Change {
		return Change{Group: g, Kind: k, SA: sa, From: from, To: to, Rekey: k.Rekey(), Effect: k.Effect()}
	}
	cs := []Change{
		mk("GET", TEKProfile, 1, "gdoi-p", "gdoi-p2"),
		mk("LAB", TEKLifetime, 3, "3600 s", "7200 s"),
		mk("GET", KEKCipher, 0, "aes 128", "aes 256"),
	}
	want := `Group GET: 2 pending policy changes
  SA  Policy change          From     To       Rekey  Behaviour after the rekey
  1   TEK: IPsec profile     gdoi-p   gdoi-p2  Yes    SAs of the old profile stay active until their lifetime expires
  -   KEK: cipher algorithm  aes 128  aes 256  Yes    The change is applied immediately
  Rekey needed: use 'crypto gdoi ks group GET rekey', or the changes will be sent in the next scheduled rekey

Group LAB: 1 pending policy change
  SA  Policy change     From    To      Rekey  Behaviour after the rekey
  3   TEK: SA lifetime  3600 s  7200 s  No     Old SAs stay active until their lifetime expires; the new lifetime takes effect after the next scheduled rekey (clear crypto sa does not help: the GM re-registers with the old lifetime and downloads the old SAs again)
  No rekey needed: the changes will be sent in the next scheduled rekey
`
	if got := FormatChanges(cs); got != want {
		t.Errorf("FormatChanges:\n%s\n--- want:\n%s", got, want)
	}
	if got, want := cs[0].String(), "group GET sa ipsec 1: TEK: IPsec profile gdoi-p -> gdoi-p2 (rekey: yes): SAs of the old profile stay active until their lifetime expires"; got != want {
		t.Errorf("String:\n  got  %s\n  want %s", got, want)
	}
	if got, want := cs[2].String(), "group GET: KEK: cipher algorithm aes 128 -> aes 256 (rekey: yes): The change is applied immediately"; got != want {
		t.Errorf("String:\n  got  %s\n  want %s", got, want)
	}
	// Every kind has table 1's answer and an effect.
	for k, info := range kinds {
		if info.effect == "" || k.Rekey() != info.rekey {
			t.Errorf("kind %s: %+v", k, info)
		}
	}
}
