package gm

import (
	"testing"

	"github.com/groupvpn/groupvpn/isakmp"
)

func spiOf(b byte) (s [isakmp.KEKSPILen]byte) { s[0] = b; return }

// proves: S2, T1 (issue 15: the rekey replay filter, alone) — a fresh KEK
// accepts any number above 0; after an accept, the same datagram is a
// retransmission, the same number with other octets a duplicate, and
// anything not above it stale; a registration's SEQ only raises the mark.
func TestSeqFilter(t *testing.T) {
	var f SeqFilter
	a, b := spiOf(1), spiOf(2)
	d1, d2 := [32]byte{1}, [32]byte{2}
	cases := []struct {
		name string
		do   func()
		spi  [isakmp.KEKSPILen]byte
		seq  uint32
		dig  [32]byte
		want SeqVerdict
	}{
		{"0 on a fresh KEK", nil, a, 0, d1, SeqStale},
		{"1 on a fresh KEK", nil, a, 1, d1, SeqNew},
		{"the datagram accepted, again", func() { f.Accept(a, 5, d1) }, a, 5, d1, SeqRetransmit},
		{"the number accepted, other octets", nil, a, 5, d2, SeqDuplicate},
		{"below", nil, a, 4, d2, SeqStale},
		{"above", nil, a, 6, d2, SeqNew},
		{"the pull's SEQ raises the mark", func() { f.Advance(a, 9) }, a, 9, d2, SeqDuplicate},
		{"and never lowers it", func() { f.Advance(a, 3) }, a, 8, d2, SeqStale},
		{"another KEK counts on its own", nil, b, 1, d1, SeqNew},
		{"a new KEK starts at 0", func() { f.Reset(b) }, b, 0, d1, SeqStale},
	}
	for _, c := range cases {
		if c.do != nil {
			c.do()
		}
		if got := f.Check(c.spi, c.seq, c.dig); got != c.want {
			t.Errorf("%s: Check(%d) = %d, want %d", c.name, c.seq, got, c.want)
		}
	}
	if f.Max() != 9 {
		t.Fatalf("Max = %d, want 9", f.Max())
	}
}

// proves: S5 (issue 15: bounded state) — the filter keeps the last four
// KEKs, however many rekeys bring new ones; the oldest is forgotten.
func TestSeqFilterBounded(t *testing.T) {
	var f SeqFilter
	for i := range 1000 {
		f.Accept(spiOf(byte(i)), uint32(i+1), [32]byte{})
	}
	if len(f.keks) != maxKEKs {
		t.Fatalf("%d KEKs kept", len(f.keks))
	}
	if f.Last(spiOf(byte(999%256))) != 1000 || f.Last(spiOf(byte(995%256))) != 0 {
		t.Fatal("the newest KEKs are not the ones kept")
	}
}
