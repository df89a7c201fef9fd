package isakmp

import "testing"

// proves: N1 (issue 18: the KS encodes a group policy per registration) —
// a GDOI SA payload is encoded with no allocation of its own: its length
// and body cost what its attribute payloads' do (it listed them in a new
// slice each time it was asked, several times per encoding, before).
func TestGroupSAEncodingAllocations(t *testing.T) {
	sa := goldenGroupSA()
	tek2 := *sa.TEKs[0]
	tek2.SPI++
	sa.TEKs = append(sa.TEKs, &tek2)
	buf := make([]byte, 0, 4096)
	parts := []Payload{sa.KEK, sa.GAP, sa.TEKs[0], sa.TEKs[1]}
	alone := testing.AllocsPerRun(100, func() {
		b := buf[:0]
		for _, p := range parts {
			b, _ = AppendPayload(b, p, PayloadNone)
		}
	})
	whole := testing.AllocsPerRun(100, func() { AppendPayload(buf[:0], sa, PayloadNone) })
	t.Logf("the SA payload: %.0f allocations, its parts alone %.0f", whole, alone)
	if whole > alone {
		t.Fatalf("encoding the SA payload makes %.0f allocations, its parts %.0f", whole, alone)
	}
}
