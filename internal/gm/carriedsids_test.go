package gm

import "testing"

// proves: E1 (issue 18 F4) — a member carrying its sender IDs into keys a
// rekey brought lays them out at 32 bits with the same IV octets (ID in the
// top bits, the 32-bit ESP sequence number below), so that it tells the
// senders of wider IDs a KS hands out under those keys apart.
func TestCarriedSIDsKeepIVs(t *testing.T) {
	for _, c := range []struct {
		ids  []uint32
		bits int
	}{{[]uint32{1, 0xffff}, 16}, {[]uint32{0x5a5a5}, 19}, {[]uint32{0xabcdef}, 24}} {
		got, bits := carriedSIDs(c.ids, c.bits)
		if bits != 32 {
			t.Fatalf("%d-bit IDs carried at %d bits", c.bits, bits)
		}
		for i, id := range c.ids {
			const seq = 0xfffffffe
			before := uint64(id)<<(64-c.bits) | seq
			after := uint64(got[i])<<32 | seq
			if before != after {
				t.Errorf("ID %#x of %d bits: IV %#016x, carried %#016x", id, c.bits, before, after)
			}
		}
	}
	if ids, bits := carriedSIDs([]uint32{7}, 32); bits != 32 || ids[0] != 7 {
		t.Errorf("32-bit IDs changed: %v %d", ids, bits)
	}
}
