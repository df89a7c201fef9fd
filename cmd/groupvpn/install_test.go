package main

import (
	"bytes"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/src"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

// makeInstall runs `make install` from the repository root with vars.
func makeInstall(t *testing.T, vars ...string) {
	t.Helper()
	testnet.RequireTools(t, "make") // skips, or fails under CI=true
	cmd := exec.Command("make", append([]string{"-s", "-C", "../..", "install"}, vars...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install %v: %v\n%s", vars, err, out)
	}
}

// proves: O1 (issue 14 item 8: `make install DESTDIR=... PREFIX=/opt/x`
// puts every file under DESTDIR and PREFIX, configuration in PREFIX/etc,
// a 0700 state directory, the systemd unit with ExecStart on the installed
// binary and Type=notify, and the bash completion; nothing else)
func TestMakeInstallLayout(t *testing.T) {
	dest := t.TempDir()
	makeInstall(t, "DESTDIR="+dest, "PREFIX=/opt/x")
	want := map[string]string{
		"opt/x/bin/groupvpn": "-rwxr-xr-x",
		"opt/x/bin/srcmstr":  "L", "opt/x/bin/startsrc": "L", "opt/x/bin/stopsrc": "L",
		"opt/x/bin/refresh": "L", "opt/x/bin/lssrc": "L",
		"opt/x/etc/groupvpn/src.conf":                       "-rw-r--r--",
		"opt/x/var/lib/groupvpn":                            "drwx------",
		"opt/x/lib/systemd/system/groupvpn-srcmstr.service": "-rw-r--r--",
		"opt/x/share/bash-completion/completions/groupvpn":  "-rw-r--r--",
	}
	var got []string
	filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dest, p)
		fi, _ := os.Lstat(p)
		mode, ok := want[rel]
		switch {
		case ok && mode == "L":
			if l, _ := os.Readlink(p); l != "groupvpn" {
				t.Errorf("%s: link to %q, want groupvpn", rel, l)
			}
		case ok && fi.Mode().String() != mode:
			t.Errorf("%s: mode %s, want %s", rel, fi.Mode(), mode)
		case !ok && !d.IsDir():
			t.Errorf("unexpected file %s", rel)
		}
		if ok {
			got = append(got, rel)
		}
		return nil
	})
	sort.Strings(got)
	if len(got) != len(want) {
		t.Errorf("installed %d of %d: %v", len(got), len(want), got)
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "opt/x/lib/systemd/system/groupvpn-srcmstr.service"))
	for _, l := range []string{
		"Type=notify\n",
		"ExecStart=/opt/x/bin/groupvpn srcmstr -f /opt/x/etc/groupvpn/src.conf\n",
		"ExecStartPost=/opt/x/bin/groupvpn startsrc -g ike\n",
	} {
		if !strings.Contains(string(unit), l) {
			t.Errorf("unit lacks %q:\n%s", l, unit)
		}
	}
	if bytes.Contains(unit, []byte("/usr/local")) || bytes.Contains(unit, []byte("sleep")) || bytes.Contains(unit, []byte("@")) {
		t.Errorf("unit keeps a hard-coded path, a sleep or a placeholder:\n%s", unit)
	}
	cfg, err := src.LoadConfig(filepath.Join(dest, "opt/x/etc/groupvpn/src.conf"))
	if err != nil {
		t.Fatalf("installed src.conf: %v", err)
	}
	var isakmpd string
	for _, s := range cfg.Subsystems {
		if s.Name == "isakmpd" {
			isakmpd = strings.Join(s.Command, " ")
		}
	}
	if !strings.Contains(isakmpd, "-f /opt/x/etc/groupvpn/isakmpd.conf -state /opt/x/var/lib/groupvpn/isakmpd.db") {
		t.Errorf("installed src.conf runs isakmpd as %q", isakmpd)
	}
	comp := filepath.Join(dest, "opt/x/share/bash-completion/completions/groupvpn")
	out, err := exec.Command("bash", "-c", `source "$1"; COMP_WORDS=(groupvpn vers); COMP_CWORD=1; _groupvpn; echo "${COMPREPLY[@]}"`, "-", comp).CombinedOutput()
	if err != nil || string(out) != "version\n" {
		t.Errorf("bash completion of 'groupvpn vers': %v %q", err, out)
	}
}

// proves: O2 (issue 14 item 8: installed under a real prefix, the unit
// passes systemd-analyze verify, and srcmstr sends READY=1 to
// $NOTIFY_SOCKET only once it answers: lssrc right after the datagram
// gets an answer, no sleep)
func TestInstalledUnitReadiness(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "x")
	makeInstall(t, "PREFIX="+prefix)
	unit := filepath.Join(prefix, "lib/systemd/system/groupvpn-srcmstr.service")
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		if out, err := exec.Command(sa, "verify", unit).CombinedOutput(); err != nil || len(out) != 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	} else {
		t.Log("systemd-analyze not installed: unit not verified")
	}

	run := t.TempDir()
	notify := filepath.Join(run, "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	bin := filepath.Join(prefix, "bin")
	cmd := exec.Command(filepath.Join(bin, "srcmstr"), "-f", filepath.Join(prefix, "etc/groupvpn/src.conf"), "-rundir", run)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	ln.SetReadDeadline(time.Now().Add(20 * time.Second))
	b := make([]byte, 256)
	n, err := ln.Read(b)
	if err != nil || string(b[:n]) != "READY=1" {
		t.Fatalf("readiness: %q, %v\nsrcmstr: %s", b[:n], err, stderr.String())
	}
	out, err := exec.Command(filepath.Join(bin, "lssrc"), "-rundir", run, "-g", "ike").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "tmd") {
		t.Fatalf("lssrc right after READY=1: %v\n%s", err, out)
	}
}
