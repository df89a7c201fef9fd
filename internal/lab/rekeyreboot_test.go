package lab

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/sadb"
)

// proves: T1 (a member registering inside a rekey), E1 — gm3's router
// reboots right after a rekey (its control plane stopped, its SA database
// emptied, started again) and registers while gm1 and gm2 still send
// with the TEKs the rekey replaced (their new TEKs wait out the rekey's
// activation delay, 30 s): the KS hands gm3 the replaced TEKs too, and
// gm3's engine opens gm1's and gm2's packets sealed with them, on the
// lab-voice SA (AES-CBC) and on the lab-data SA (AES-GCM: gm3, of
// version.ReplacedCounterTEKs, installs it without sender IDs; gm1 and
// gm2 send with it under their own). Before, gm3 held the rekey's TEKs
// alone and dropped those packets as of no SA until the others switched
// (on the AES-GCM SA until this version). gm3 itself sends with the
// rekey's TEKs, which gm1 and gm2 hold since the rekey (its SAs' counters
// tell).
func TestRebootInsideRekeyOpensTheOthersPackets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var mu sync.Mutex
	got := map[string]bool{} // "dst payload" delivered
	l, err := Start(ctx, Options{Members: 3, Port: 23848, Dir: t.TempDir(), DataPlane: true,
		Deliver: func(i int, p []byte) {
			mu.Lock()
			defer mu.Unlock()
			got[fmt.Sprintf("%d %s", i, strings.TrimSuffix(string(p), Marker))] = true
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Wait(ctx, &strings.Builder{}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// member i's oldest TEK for voice (AES-CBC) or data (AES-GCM), and
	// how many it holds
	oldest := func(i int, voice bool) (sadb.TEK, int) {
		teks, err := l.SATEKs(i)
		if err != nil {
			t.Fatal(err)
		}
		var old sadb.TEK
		n := 0
		for _, tk := range teks {
			if (tk.DstPort == 5060) == voice {
				n++
				if old.SPI == 0 || tk.Expires.Before(old.Expires) {
					old = tk
				}
			}
		}
		return old, n
	}
	voice := func(i int) (sadb.TEK, int) { return oldest(i, true) }
	data := func(i int) (sadb.TEK, int) { return oldest(i, false) }
	before, _ := voice(0)
	beforeData, _ := data(0)
	if beforeData.Transform != 20 || len(beforeData.SenderIDs) == 0 { // ESP_AES_GCM_16, RFC 6054 sender IDs
		t.Fatalf("the lab's data TEK is not AES-GCM with sender IDs: %+v", beforeData)
	}
	// A second after the TEKs were made: the rekey's end a second later
	// than theirs (lifetimes go in whole seconds; a TEK that does not end
	// before the new one is not handed out).
	time.Sleep(1100 * time.Millisecond)

	ss := l.KS.Ctl.NewSession()
	if r := ss.Do(ctx, &ctl.WireRequest{V: ctl.Version, Cmd: "crypto gdoi ks rekey"}); !r.OK {
		t.Fatalf("crypto gdoi ks rekey: %s", r.Error)
	}
	rekeyed := time.Now()
	// gm1 and gm2 hold the rekey's TEKs, sending with the old ones.
	for _, i := range []int{0, 1} {
		for {
			if _, n := voice(i); n == 2 {
				if _, n := data(i); n == 2 {
					break
				}
			}
			if time.Since(rekeyed) > 10*time.Second {
				t.Fatalf("gm%d did not get the rekey", i+1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := l.RebootGM(2); err != nil {
		t.Fatal(err)
	}
	if old, _ := voice(2); old.SPI != 0 {
		t.Fatal("gm3's SA database was not emptied")
	}
	if err := l.Wait(ctx, &strings.Builder{}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	all, err := l.SATEKs(2)
	if err != nil {
		t.Fatal(err)
	}
	if _, n := voice(2); n != 2 || !slices.ContainsFunc(all, func(tk sadb.TEK) bool { return tk.SPI == before.SPI }) {
		t.Fatalf("gm3 after its reboot: %d voice TEKs %+v; want 2, the replaced 0x%08x among them", n, all, before.SPI)
	}
	// The replaced AES-GCM TEK without sender IDs (it only opens packets),
	// the new one with gm3's.
	for _, tk := range all {
		if tk.DstPort != 5060 && (tk.SPI == beforeData.SPI) != (len(tk.SenderIDs) == 0) {
			t.Fatalf("gm3 after its reboot: data TEK 0x%08x with sender IDs %v (the replaced one is 0x%08x)", tk.SPI, tk.SenderIDs, beforeData.SPI)
		}
	}
	if _, n := data(2); n != 2 || !slices.ContainsFunc(all, func(tk sadb.TEK) bool { return tk.SPI == beforeData.SPI }) {
		t.Fatalf("gm3 after its reboot: %d data TEKs %+v; want 2, the replaced 0x%08x among them", n, all, beforeData.SPI)
	}
	// The premise: gm1 and gm2 still send with the replaced TEK.
	for _, i := range []int{0, 1} {
		teks, _ := l.SATEKs(i)
		for _, tk := range teks {
			if tk.SPI != before.SPI && tk.SPI != beforeData.SPI && !tk.SendFrom.After(time.Now().Add(2*time.Second)) {
				t.Fatalf("gm%d sends with the rekey's TEK 0x%08x from %s: too soon for the test", i+1, tk.SPI, tk.SendFrom)
			}
		}
	}
	for i := range 3 {
		for j := range 3 {
			if i != j {
				if err := l.SendUDP(ctx, i, j, true, []byte(fmt.Sprintf("voice %d->%d", i, j))); err != nil {
					t.Fatal(err)
				}
				if err := l.SendUDP(ctx, i, j, false, []byte(fmt.Sprintf("data %d->%d", i, j))); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 12 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if since := time.Since(rekeyed); since >= ks.RekeyATD {
		t.Fatalf("the packets were sent %s after the rekey: past its activation delay, they prove nothing", since)
	}
	// gm3 opened gm1's and gm2's packets with the replaced TEK and sealed
	// its own with the rekey's (which gm1 and gm2 hold since the rekey):
	// its SA's counters, as show crypto ipsec sa prints them.
	res := l.GMs[2].Ctl.Exec(ctx, "show crypto ipsec sa")
	blocks := strings.Split(res.Text, "interface: ")
	for _, c := range []struct {
		what string
		old  uint32
		sa   func(b string) bool
	}{
		{"voice", before.SPI, func(b string) bool { return strings.Contains(b, "/5060)") }},
		{"data", beforeData.SPI, func(b string) bool { return strings.Contains(b, "/7000)") || !strings.Contains(b, "/5060)") }},
	} {
		counted := 0
		for _, b := range blocks[1:] {
			if !c.sa(b) {
				continue
			}
			counted++
			if strings.Contains(b, fmt.Sprintf("spi: 0x%08X(", c.old)) {
				if !strings.Contains(b, "#pkts encaps: 0,") || !strings.Contains(b, "#pkts decaps: 2,") {
					t.Errorf("gm3's replaced %s SA:\n%s", c.what, b)
				}
			} else if !strings.Contains(b, "#pkts encaps: 2,") || !strings.Contains(b, "#pkts decaps: 0,") {
				t.Errorf("gm3's new %s SA:\n%s", c.what, b)
			}
		}
		if counted != 2 {
			t.Errorf("show crypto ipsec sa on gm3: %d %s SAs\n%s%s", counted, c.what, res.Text, res.Error)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range 3 {
		for j := range 3 {
			for _, what := range []string{"voice", "data"} {
				if k := fmt.Sprintf("%d %s %d->%d", j, what, i, j); i != j && !got[k] {
					t.Errorf("gm%d's %s packet to gm%d was not delivered", i+1, what, j+1)
				}
			}
		}
	}
}
