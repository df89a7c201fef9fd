package replay

import (
	"math/rand/v2"
	"testing"
)

// proves: T2 (issue 12: counter anti-replay per sender) — in-order,
// reordered within the window, duplicates and too-old numbers.
func TestFilterBasics(t *testing.T) {
	f := New(64)
	if f.Accept(0) {
		t.Fatal("sequence number 0 accepted")
	}
	for seq := uint64(1); seq <= 10; seq++ {
		if !f.Accept(seq) {
			t.Fatalf("fresh %d refused", seq)
		}
		if f.Accept(seq) || f.Check(seq) {
			t.Fatalf("duplicate %d accepted", seq)
		}
	}
	if !f.Accept(100) {
		t.Fatal("jump forward refused")
	}
	// window 64 at top 100: 37..100 inside, 36 and below outside.
	if !f.Check(37) || f.Check(36) {
		t.Fatalf("window edge wrong: Check(37)=%v Check(36)=%v", f.Check(37), f.Check(36))
	}
	if f.Accept(36) || f.Accept(10) || f.Accept(1) {
		t.Fatal("out-of-window number accepted")
	}
	if !f.Accept(37) || f.Accept(37) {
		t.Fatal("oldest in-window number: first must pass, second must not")
	}
	if f.Top() != 100 {
		t.Fatalf("top %d, want 100", f.Top())
	}
}

// Check must not change the filter: only Accept records (a packet that
// fails authentication must not move the window).
func TestFilterCheckIsReadOnly(t *testing.T) {
	var f Filter
	if !f.Check(5000) || !f.Check(5000) {
		t.Fatal("Check of a fresh number refused")
	}
	if f.Top() != 0 || !f.Accept(1) {
		t.Fatal("Check moved the window")
	}
}

func TestFilterWindowClamp(t *testing.T) {
	for _, c := range []struct{ in, want int }{{0, DefaultWindow}, {-3, DefaultWindow}, {1, 1}, {2048, MaxWindow}, {1984, 1984}} {
		f := New(c.in)
		if f.Window() != c.want {
			t.Errorf("New(%d).Window() = %d, want %d", c.in, f.Window(), c.want)
		}
	}
	var z Filter
	if z.Window() != DefaultWindow {
		t.Errorf("zero Filter window %d", z.Window())
	}
}

// A jump of more than the ring clears everything: old bits must not come
// back as "seen" when their block is reused.
func TestFilterLargeJumpsClearRing(t *testing.T) {
	f := New(MaxWindow)
	for seq := uint64(1); seq <= 3000; seq++ {
		f.Accept(seq)
	}
	for _, base := range []uint64{3000 + 2048, 3000 + 2048 + 64*ringBlocks*7 + 13, 1 << 40} {
		if !f.Accept(base) {
			t.Fatalf("jump to %d refused", base)
		}
		for d := uint64(1); d < uint64(f.Window()); d++ {
			if !f.Check(base - d) {
				t.Fatalf("after jump to %d, %d (never seen) refused", base, base-d)
			}
		}
	}
	// Exactly at the window edge for the maximal window.
	if f.Check(1<<40 - uint64(MaxWindow)) {
		t.Fatal("number one past the window accepted")
	}
}

// Against a reference model (a set plus the top) over random reorderings,
// duplicates and jumps, for several windows.
func TestFilterMatchesModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, w := range []int{1, 63, 64, 65, 1024, MaxWindow} {
		f := New(w)
		seen := map[uint64]bool{}
		var top uint64
		for i := 0; i < 200000; i++ {
			var seq uint64
			switch r.IntN(10) {
			case 0:
				seq = top + uint64(r.IntN(5000)) // jump
			case 1, 2:
				seq = uint64(r.IntN(int(top) + 1)) // anything old, incl. 0
			default:
				seq = top + 1 - uint64(r.IntN(w+70)) // near the edge
				if seq > top+1 {
					seq = 0
				}
			}
			want := seq != 0 && !seen[seq] && (seq > top || top-seq < uint64(w))
			if got := f.Accept(seq); got != want {
				t.Fatalf("window %d: Accept(%d) at top %d = %v, want %v", w, seq, top, got, want)
			}
			if want {
				seen[seq] = true
				if seq > top {
					top = seq
				}
			}
		}
	}
}

func BenchmarkAcceptInOrder(b *testing.B) {
	var f Filter
	b.ReportAllocs()
	for i := range b.N {
		f.Accept(uint64(i) + 1)
	}
}
