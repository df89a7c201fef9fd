package sadb

import "testing"

func TestMemory(t *testing.T) {
	m := NewMemory()
	if err := m.InstallTEK(TEK{Group: "g", SPI: 0}); err == nil {
		t.Fatal("SPI 0 accepted")
	}
	for _, spi := range []uint32{3, 1, 2} {
		if err := m.InstallTEK(TEK{Group: "g", SPI: spi}); err != nil {
			t.Fatal(err)
		}
	}
	m.InstallTEK(TEK{Group: "a", SPI: 9})
	got := m.TEKs()
	if len(got) != 4 || got[0].Group != "a" || got[1].SPI != 1 || got[3].SPI != 3 {
		t.Fatalf("order %+v", got)
	}
	if err := m.DeleteTEK("g", 7); err == nil {
		t.Fatal("deleting a missing TEK succeeded")
	}
	m.DeleteTEK("g", 1)
	m.InstallKEK(KEK{Group: "g"})
	m.InstallKEK(KEK{Group: "a"})
	if len(m.TEKs()) != 3 || len(m.KEKs()) != 2 || m.KEKs()[0].Group != "a" {
		t.Fatal("bookkeeping")
	}
	m.DeleteKEK("a")
	if len(m.KEKs()) != 1 {
		t.Fatal("KEK not deleted")
	}
}
