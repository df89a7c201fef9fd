package gdoi

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/isakmp"
)

// phase1With is phase1 with the suite's hash h.
func phase1With(t testing.TB, h ike.HashAlg) (gm, ks *ike.SA) {
	t.Helper()
	s := ike.Suite{KeyBits: 256, Hash: h, Group: 19, Auth: ike.AuthPSK}
	cfg := &ike.Config{Suites: []ike.Suite{s}, DOI: isakmp.DOIGDOI,
		Creds: ike.Credentials{PSK: func(netip.Addr) ([]byte, bool) { return []byte("gdoi"), true }}}
	eg, _ := ike.NewEndpoint(cfg, gmAddr, ike.Limits{})
	ek, _ := ike.NewEndpoint(cfg, ksAddr, ike.Limits{})
	_, out, err := eg.Initiate(ksAddr, t0)
	if err != nil {
		t.Fatal(err)
	}
	ike.Exchange(eg, ek, eg, out, t0)
	if len(eg.SAs()) != 1 || len(ek.SAs()) != 1 {
		t.Fatal("phase 1 not established")
	}
	return eg.SAs()[0], ek.SAs()[0]
}

// proves: N1 (issue 18: a served exchange's HASHes computed in its
// scratch, Protector.AppendPRFa) — with a scratch, for every PRF (20 to
// 64 octets: the HASH computed in the room's first octets and moved over
// the M-ID), sealInto builds the message seal builds without one, byte
// for byte, and checkHash accepts it and refuses it altered, the scratch
// reused from one message to the next as a Serve does; nothing stays in
// the scratch's buffer after either; and the scratch stays in the
// 896-octet size class (a field of 64 octets for the PRF's output moved
// it to the 1,024 one).
func TestSealAndCheckInScratch(t *testing.T) {
	if n := reflect.TypeOf(scratch{}).Size(); n > 896 {
		t.Fatalf("scratch of %d octets, want at most 896 (its size class)", n)
	}
	pol := &fakePolicy{}
	groupSA, _ := pol.Join(ike.Info{}, nil)
	_, kd, _ := pol.Keys(ike.Info{}, nil, 0)
	prefix := bytes.Repeat([]byte{5}, 2*NonceLen)
	for _, h := range []ike.HashAlg{ike.SHA1, ike.SHA256, ike.SHA384, ike.SHA512} {
		gm, ks := phase1With(t, h)
		sc := &scratch{}
		sc.buf = sc.space[:0]
		for i, rest := range [][]isakmp.Payload{
			{&isakmp.Nonce{Data: bytes.Repeat([]byte{1}, NonceLen)}, groupSA},
			{&isakmp.SEQ{Number: 9}, kd},
			nil,
		} {
			mid := uint32(0x200 + i)
			want, err := seal(ks, mid, prefix, rest)
			if err != nil {
				t.Fatal(err)
			}
			ks.ForgetMessageID(mid) // the same first IV again
			got, err := sealInto(ks, isakmp.ExchangePull, mid, prefix, rest, sc)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%v, message %d: sealed in a scratch\n%x\nwithout\n%x", h, i, got, want)
			}
			if !bytes.Equal(sc.buf[:cap(sc.buf)], make([]byte, cap(sc.buf))) {
				t.Fatalf("%v, message %d: the scratch's buffer is not cleared after sealing", h, i)
			}
			ps, err := gm.DecryptPhase2(parse(t, got))
			if err != nil {
				t.Fatal(err)
			}
			if err := checkHash(gm, mid, prefix, ps, sc); err != nil {
				t.Fatalf("%v, message %d: checked in a scratch: %v", h, i, err)
			}
			if !bytes.Equal(sc.buf[:cap(sc.buf)], make([]byte, cap(sc.buf))) {
				t.Fatalf("%v, message %d: the scratch's buffer is not cleared after a check", h, i)
			}
			hp := ps[0].(*isakmp.Hash)
			hp.Data[len(hp.Data)-1] ^= 1
			if err := checkHash(gm, mid, prefix, ps, sc); err != ErrHash {
				t.Fatalf("%v, message %d: an altered HASH checked in a scratch: %v", h, i, err)
			}
		}
	}
}
