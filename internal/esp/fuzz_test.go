package esp

import (
	"bytes"
	"testing"
)

// FuzzOpen throws arbitrary packets at a fresh receiving SA of one of the
// transforms, seeded with real sealed packets of every transform. Open must
// not panic, must return only its typed drop reasons, and must accept
// nothing but a packet whose ESP part is exactly one that was sealed
// (the outer header is not covered by ESP), delivering its inner packet.
//
// proves: E1 (issue 12: no input panics; a modified packet is never
// accepted)
func FuzzOpen(f *testing.F) {
	trs := transforms()
	sealed := make([]map[string]string, len(trs)) // ESP part -> inner
	for i, tr := range trs {
		tx := mustNew(f, tr.tek, Config{Rand: newRand(byte(i))})
		sealed[i] = map[string]string{}
		for _, n := range []int{0, 1, 2, 3, 13, 64, 200} {
			inner := innerPacket("10.1.1.5", "10.1.2.7", n, 64, n%2 == 0)
			pkt, err := tx.Seal(nil, inner)
			if err != nil {
				f.Fatal(err)
			}
			sealed[i][string(pkt[20:])] = string(inner)
			f.Add(uint8(i), pkt)
		}
	}
	f.Add(uint8(0), []byte{0x45})
	f.Add(uint8(2), make([]byte, 64))
	f.Fuzz(func(t *testing.T, which uint8, pkt []byte) {
		i := int(which) % len(trs)
		rx := mustNew(t, trs[i].tek, Config{})
		in := bytes.Clone(pkt)
		inner, err := rx.Open(in)
		if err != nil {
			switch err {
			case ErrMalformed, ErrSPI, ErrAuth, ErrReplay:
			default:
				t.Fatalf("untyped drop %v", err)
			}
			return
		}
		ihl := int(pkt[0]&0xf) * 4
		tot := int(pkt[2])<<8 | int(pkt[3])
		want, ok := sealed[i][string(pkt[ihl:tot])]
		if !ok {
			t.Fatalf("accepted a packet whose ESP part was never sealed: % x", pkt)
		}
		if string(inner) != want {
			t.Fatalf("accepted packet delivered % x, sealed % x", inner, want)
		}
	})
}

// FuzzSealOpen seals arbitrary inner packets with every transform: Seal
// never panics, refuses (ErrMalformed, ErrTooBig) anything that is not one
// IPv4 packet of exactly its length, and what it seals opens to the very
// inner packet with the outer addresses equal to the inner ones.
//
// proves: E1 (issue 12: no input panics; address preservation)
func FuzzSealOpen(f *testing.F) {
	f.Add(uint8(0), innerPacket("10.1.1.5", "10.1.2.7", 0, 1, true))
	f.Add(uint8(2), innerPacket("10.1.1.5", "10.1.2.7", 100, 255, false))
	f.Add(uint8(5), []byte{0x46, 0, 0, 24})
	trs := transforms()
	f.Fuzz(func(t *testing.T, which uint8, inner []byte) {
		tr := trs[int(which)%len(trs)]
		tx, rx := mustNew(t, tr.tek, Config{}), mustNew(t, tr.tek, Config{})
		pkt, err := tx.Seal(nil, inner)
		if err != nil {
			if err != ErrMalformed && err != ErrTooBig {
				t.Fatalf("untyped refusal %v", err)
			}
			return
		}
		if !bytes.Equal(pkt[12:20], inner[12:20]) {
			t.Fatalf("outer addresses % x, inner % x", pkt[12:20], inner[12:20])
		}
		got, err := rx.Open(pkt)
		if err != nil || !bytes.Equal(got, inner) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
