package bench

import (
	"context"
	"strings"
	"testing"
)

// proves: groundwork for the README figures — the register and rekey
// scenarios run end to end on a small lab and report what they measured.
func TestRegisterAndRekeyScenarios(t *testing.T) {
	ctx := context.Background()
	reg, err := Register(ctx, 20, 25848, false)
	if err != nil {
		t.Fatal(err)
	}
	if reg.PerSec <= 0 || reg.Ceiling <= 0 {
		t.Fatalf("register report: %+v", reg)
	}
	// proves: D1 — the KS serves as well behind the iked broker.
	viaIked, err := Register(ctx, 20, 25850, true)
	if err != nil {
		t.Fatal(err)
	}
	if !viaIked.Broker || viaIked.PerSec <= 0 {
		t.Fatalf("register through iked: %+v", viaIked)
	}
	rk, err := Rekey(ctx, 20, 25849)
	if err != nil {
		t.Fatal(err)
	}
	if rk.Acked != 20 {
		t.Fatalf("%d of 20 members acknowledged the rekey", rk.Acked)
	}
}

// proves: R1, R2 in real time — `clear crypto gdoi ks members` to 30 GMs:
// every one holds the post-removal keys within the shortened lifetime and
// none is ever seen without a valid TEK. Takes 1-2 minutes (the jitter
// window of a 3600 s TEK); skipped with -short.
func TestRemovalScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time GM removal takes 1-2 minutes; skipped with -short")
	}
	r, err := Removal(context.Background(), 30, 25850, false)
	if err != nil {
		t.Fatal(err)
	}
	if r.Lacked != 0 || r.Reregs != 30 {
		var b strings.Builder
		r.Print(&b)
		t.Fatalf("removal:\n%s", b.String())
	}
}
