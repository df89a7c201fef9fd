package store

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// saveMembers saves fullGroup with n members, then again with each member
// registered once more, and closes the store.
func saveMembers(t *testing.T, path string, n int) {
	t.Helper()
	s := mustOpen(t, path)
	g := fullGroup("G", 7)
	g.Members = nil
	for i := range n {
		g.Members = append(g.Members, MemberState{Address: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}),
			Registered: t0, LastRegister: t0, Registrations: 1, SenderIDs: []uint32{uint32(i + 1)}})
	}
	for round := range 3 {
		for i := range g.Members {
			g.Members[i].LastRegister = t0.Add(time.Duration(round) * time.Minute)
		}
		if err := s.SaveGroup(g); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// proves: O4 (issue 18: the store maps 1 GiB ahead so that a storm does
// not remap it, and its file still stays within 1 MiB of what it holds;
// with bbolt's 16 MiB growth a store of ten members was a 16 MiB file
// that every start read whole)
func TestStoreFileStaysNearItsContent(t *testing.T) {
	for _, n := range []int{10, 3000} {
		path := filepath.Join(t.TempDir(), "ks.db")
		saveMembers(t, path, n)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		s := mustOpen(t, path)
		var used int64
		s.db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
		s.Close()
		t.Logf("%d members: file %d octets, %d in use", n, fi.Size(), used)
		if fi.Size() > used+allocSize+64<<10 {
			t.Errorf("%d members: a %d-octet file for %d octets in use", n, fi.Size(), used)
		}
	}
}

// proves: O4 — where the address space is limited so that the store's
// 1 GiB map cannot be made, the store still opens and saves (mapping what
// its file has), in a child process under RLIMIT_AS.
func TestStoreOpensUnderAnAddressSpaceLimit(t *testing.T) {
	if dir := os.Getenv("GROUPVPN_STORE_AS_CHILD"); dir != "" {
		// What the process has mapped now, and 512 MiB more: room for
		// the runtime and a small map, not for a 1 GiB one.
		var as syscall.Rlimit
		status, err := os.ReadFile("/proc/self/status")
		if err != nil {
			t.Fatal(err)
		}
		var vmKB uint64
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmSize:" {
				vmKB, _ = strconv.ParseUint(f[1], 10, 64)
			}
		}
		if vmKB == 0 {
			t.Fatal("no VmSize in /proc/self/status")
		}
		as.Cur = vmKB<<10 + 512<<20
		as.Max = as.Cur
		lim := &as
		if err := syscall.Setrlimit(syscall.RLIMIT_AS, lim); err != nil {
			t.Fatal(err)
		}
		saveMembers(t, filepath.Join(dir, "ks.db"), 10)
		s := mustOpen(t, filepath.Join(dir, "ks.db"))
		defer s.Close()
		if g := load(t, s)["G"]; g == nil || len(g.Members) != 10 {
			t.Fatalf("after saves under the limit: %v", g)
		}
		fmt.Println("child: opened and saved under RLIMIT_AS")
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestStoreOpensUnderAnAddressSpaceLimit$", "-test.v")
	cmd.Env = append(os.Environ(), "GROUPVPN_STORE_AS_CHILD="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
