package sadb

import (
	"testing"
	"time"
)

// proves: D1 (issue 15: lifetimes expire in one place) — Memory.Expire is
// the rule and the deletion every SA database uses (tmd's Sweep, tmd's
// client mirror, isakmpd's in-process database): a TEK ends at its
// Expires or its earlier Deactivate, a KEK at its Expires, a zero time
// never; it returns what it deleted and the next end.
func TestMemoryExpire(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	m := NewMemory()
	for _, tk := range []TEK{
		{Group: "g", SPI: 1, Expires: t0.Add(10 * time.Minute)},
		{Group: "g", SPI: 2, Expires: t0.Add(10 * time.Minute), Deactivate: t0.Add(time.Minute)},
		{Group: "g", SPI: 3}, // no lifetime: never ends
		{Group: "h", SPI: 4, Deactivate: t0.Add(2 * time.Minute)},
	} {
		if err := m.InstallTEK(tk); err != nil {
			t.Fatal(err)
		}
	}
	m.InstallKEK(KEK{Group: "g", Expires: t0.Add(5 * time.Minute)})
	m.InstallKEK(KEK{Group: "h"})
	steps := []struct {
		at          time.Duration
		gone        []uint32
		keksGone    int
		next        time.Duration // 0: none
		left, kleft int
	}{
		{0, nil, 0, time.Minute, 4, 2},
		{time.Minute - time.Nanosecond, nil, 0, time.Minute, 4, 2},
		{time.Minute, []uint32{2}, 0, 2 * time.Minute, 3, 2},
		{5 * time.Minute, []uint32{4}, 1, 10 * time.Minute, 2, 1},
		{5 * time.Minute, nil, 0, 10 * time.Minute, 2, 1}, // again: nothing twice
		{time.Hour, []uint32{1}, 0, 0, 1, 1},
	}
	for _, st := range steps {
		teks, keks, next := m.Expire(t0.Add(st.at))
		var gone []uint32
		for _, tk := range teks {
			gone = append(gone, tk.SPI)
		}
		want := time.Time{}
		if st.next != 0 {
			want = t0.Add(st.next)
		}
		if len(gone) != len(st.gone) || (len(gone) > 0 && gone[0] != st.gone[0]) || len(keks) != st.keksGone || !next.Equal(want) {
			t.Errorf("at +%v: expired TEKs %v KEKs %d next %v; want %v, %d, %v", st.at, gone, len(keks), next, st.gone, st.keksGone, want)
		}
		if len(m.TEKs()) != st.left || len(m.KEKs()) != st.kleft {
			t.Errorf("at +%v: %d TEKs %d KEKs left, want %d, %d", st.at, len(m.TEKs()), len(m.KEKs()), st.left, st.kleft)
		}
	}
	if m.TEKs()[0].SPI != 3 || m.KEKs()[0].Group != "h" {
		t.Fatalf("kept %+v %+v", m.TEKs(), m.KEKs())
	}
}
