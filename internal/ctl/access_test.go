package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

// helperEnv makes the test binary a control client (TestAccessHelper):
// "SOCKET\tCMD\tCMD..."; it prints one JSON response a line.
const helperEnv = "GROUPVPN_CTL_ACCESS_HELPER"

func TestAccessHelper(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("helper process only")
	}
	parts := strings.Split(spec, "\t")
	c, err := Dial(parts[0])
	if err != nil {
		fmt.Println(`{"error":"dial: ` + err.Error() + `"}`)
		os.Exit(0)
	}
	for _, cmd := range parts[1:] {
		resp, err := c.Run(context.Background(), cmd)
		if err != nil {
			resp = &WireResponse{Error: "run: " + err.Error()}
		}
		b, _ := json.Marshal(resp)
		fmt.Println(string(b))
	}
	os.Exit(0)
}

// runAs runs cmds on the control socket from a process of uid/gid (the
// test binary, copied where that user can execute it).
func runAs(t *testing.T, bin, sock string, uid, gid uint32, cmds ...string) []WireResponse {
	t.Helper()
	cmd := exec.Command(bin, "-test.run=^TestAccessHelper$")
	cmd.Env = append(os.Environ(), helperEnv+"="+strings.Join(append([]string{sock}, cmds...), "\t"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper as uid %d: %v (%s)", uid, err, out)
	}
	var rs []WireResponse
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.HasPrefix(l, "{") {
			continue
		}
		var r WireResponse
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("helper output %q: %v", l, err)
		}
		rs = append(rs, r)
	}
	if len(rs) != len(cmds) {
		t.Fatalf("helper as uid %d answered %d of %d: %s", uid, len(rs), len(cmds), out)
	}
	return rs
}

type auditRec struct {
	user, line string
	denied     bool
}

// proves: O2, O3, O6 (issue 14 item 6: a member of the socket's group, another
// uid, may run read-only commands and is refused a state-changing one,
// which is audited with its user name read from SO_PEERCRED; the owner's
// change runs and is audited with its name)
func TestReadOnlyGroupAccess(t *testing.T) {
	testnet.RequireRoot(t) // the helper runs as another uid; skips, or fails under CI=true
	grp := testnet.RequireGroup(t, "nogroup")
	gid, _ := strconv.Atoi(grp.Gid)
	const uid = 65534
	name := "uid=65534"
	if u, err := user.LookupId("65534"); err == nil {
		name = u.Username
	}
	dir, err := os.MkdirTemp("", "ctl-access-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "helper.test")
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(dst, src)
	src.Close()
	dst.Close()

	srv := NewServer(nil)
	var mu sync.Mutex
	var audit []auditRec
	srv.SetAudit(func(ctx context.Context, user, line string, denied bool) {
		mu.Lock()
		audit = append(audit, auditRec{user, line, denied})
		mu.Unlock()
	})
	cleared := 0
	srv.HandleReadOnly("show thing", "", func(ctx context.Context, _ *Request) (*Reply, error) {
		p, _ := PeerFrom(ctx)
		return &Reply{Text: fmt.Sprintf("thing for %s uid %d pid %d\n", p.User, p.UID, p.PID)}, nil
	})
	srv.Handle("clear thing", "", func(ctx context.Context, _ *Request) (*Reply, error) {
		mu.Lock()
		cleared++
		mu.Unlock()
		return &Reply{Text: "cleared\n"}, nil
	})
	sock := filepath.Join(dir, "d.sock")
	ln, err := ListenGroup(sock, "nogroup")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 || fi.Sys().(*syscall.Stat_t).Gid != uint32(gid) {
		t.Fatalf("socket mode %v gid %d, want 0660 gid %d", fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Gid, gid)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeListener(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })

	rs := runAs(t, bin, sock, uid, uint32(gid), "show thing", "clear thing")
	if !rs[0].OK || !strings.Contains(rs[0].Text, "thing for "+name+" uid 65534") {
		t.Fatalf("show from the read-only group: %+v", rs[0])
	}
	want := "% Permission denied: read-only access (user " + name + ")"
	if rs[1].OK || !strings.HasPrefix(rs[1].Error, want) {
		t.Fatalf("clear from the read-only group: %+v, want %q", rs[1], want)
	}
	// A process of another uid outside the group cannot connect at all.
	rs = runAs(t, bin, sock, 4242, 4242, "show thing")
	if rs[0].OK || !strings.Contains(rs[0].Error, "dial") {
		t.Fatalf("another user outside the group: %+v", rs[0])
	}

	c, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	r, err := c.Run(rctx, "clear thing")
	if err != nil || !r.OK {
		t.Fatalf("clear from root: %+v %v", r, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if cleared != 1 {
		t.Fatalf("clear ran %d times, want once (the owner's)", cleared)
	}
	wantAudit := []auditRec{{name, "clear thing", true}, {"root", "clear thing", false}}
	if fmt.Sprint(audit) != fmt.Sprint(wantAudit) {
		t.Fatalf("audit %v, want %v (show is not audited)", audit, wantAudit)
	}
}
