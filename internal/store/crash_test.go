package store

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const crashEnv = "GROUPVPN_STORE_CRASH_CHILD"

// TestCrashChild is the process TestCrashSafety kills: it writes to the
// store as fast as it can and reports every reservation on stdout after
// ReserveSeq has returned, the moment a KS would start sending.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("only run by TestCrashSafety")
	}
	s, err := Open(path, Options{LockTimeout: 10 * time.Second})
	if err != nil {
		fmt.Printf("ERR %v\n", err)
		os.Exit(3)
	}
	groups := load(t, s)
	for _, name := range []string{"A", "B"} {
		if groups[name] == nil {
			groups[name] = fullGroup(name, uint32(name[0]))
			if err := s.SaveGroup(groups[name]); err != nil {
				fmt.Printf("ERR %v\n", err)
				os.Exit(3)
			}
		}
	}
	for i := 0; ; i++ {
		name := []string{"A", "B"}[i%2]
		g := groups[name]
		from, to, err := s.ReserveSeq(name, uint32(1+i%7))
		if err != nil {
			fmt.Printf("ERR %v\n", err)
			os.Exit(3)
		}
		fmt.Printf("R %s %d %d\n", name, from, to)
		g.Seq, g.SeqReserved = to, to
		g.UpdatedAt = time.Now().UTC()
		g.TEKs[0].SPI++
		addr := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		g.Members = slices.DeleteFunc(g.Members, func(m MemberState) bool { return m.Address == addr })
		g.Members = append(g.Members, MemberState{Address: addr,
			Identity: strings.Repeat("m", i%50), Registered: g.UpdatedAt, LastRegister: g.UpdatedAt, Registrations: i})
		if len(g.Members) > 40 {
			g.Members = g.Members[len(g.Members)-20:]
		}
		if err := s.SaveGroup(g); err != nil {
			fmt.Printf("ERR %v\n", err)
			os.Exit(3)
		}
		other := []string{"A", "B"}[(i+1)%2]
		m := MemberState{Address: netip.AddrFrom4([4]byte{192, 0, byte(i >> 8), byte(i)}), Registrations: i}
		if err := s.SaveMember(other, m); err != nil {
			fmt.Printf("ERR %v\n", err)
			os.Exit(3)
		}
		if i%3 == 0 {
			if err := s.DeleteMember(other, m.Address); err != nil {
				fmt.Printf("ERR %v\n", err)
				os.Exit(3)
			}
		}
	}
}

// proves: O4
// proves: T1
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "ks.db")
	reserved := map[string]uint32{} // the highest to each child reported, over all runs
	for run := range 6 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+path)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var (
			mu      sync.Mutex
			lines   int
			first   = make(chan struct{})
			done    = make(chan struct{})
			fail    string
			prevRun = map[string]uint32{}
		)
		for k, v := range reserved {
			prevRun[k] = v
		}
		go func() {
			defer close(done)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				mu.Lock()
				switch {
				case len(f) == 4 && f[0] == "R":
					from, _ := strconv.ParseUint(f[2], 10, 32)
					to, _ := strconv.ParseUint(f[3], 10, 32)
					// A restarted KS continues strictly above what it
					// had reserved before it was killed.
					if fail == "" && uint32(from) <= reserved[f[1]] {
						fail = fmt.Sprintf("group %s: reserved [%d, %d] after %d", f[1], from, to, reserved[f[1]])
					}
					reserved[f[1]] = uint32(to)
					if lines++; lines == 1 {
						close(first)
					}
				case len(f) > 0 && f[0] == "ERR":
					fail = sc.Text()
				}
				mu.Unlock()
			}
		}()
		if run == 0 {
			// Kill it anywhere, perhaps while it creates the store.
			time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond)
		} else {
			select {
			case <-first:
			case <-done:
			case <-time.After(20 * time.Second):
				t.Error("the child reported nothing in 20 s")
			}
			time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond)
		}
		cmd.Process.Kill() // SIGKILL
		<-done
		cmd.Wait()
		mu.Lock()
		if fail != "" {
			t.Fatalf("run %d: %s", run, fail)
		}
		n := lines
		mu.Unlock()

		s, err := Open(path, Options{})
		if err != nil {
			t.Fatalf("run %d: Open after SIGKILL: %v", run, err)
		}
		got := load(t, s)
		for name, r := range reserved {
			g := got[name]
			if g == nil {
				t.Fatalf("run %d: group %s lost", run, name)
			}
			if g.SeqReserved < r {
				t.Fatalf("run %d: group %s: SeqReserved %d on disk, the child had reported %d", run, name, g.SeqReserved, r)
			}
			if g.Seq > g.SeqReserved {
				t.Fatalf("run %d: group %s: Seq %d above SeqReserved %d", run, name, g.Seq, g.SeqReserved)
			}
			reserved[name] = g.SeqReserved
		}
		for name, g := range got {
			if len(g.TEKs) != 2 || g.KEK.KeyBits != 128 {
				t.Fatalf("run %d: group %s decoded wrong: %v", run, name, g)
			}
		}
		t.Logf("run %d: killed after %d reservations (this run), reserved A %d B %d (was A %d B %d)",
			run, n, reserved["A"], reserved["B"], prevRun["A"], prevRun["B"])
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("left in the directory: %v", entries)
	}
}
