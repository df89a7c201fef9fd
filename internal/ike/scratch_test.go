package ike

import (
	"bytes"
	"crypto/hmac"
	"testing"
)

// proves: N1 (issue 18: the KS's CPU per registration) — the PRF computed
// in an Endpoint's scratch is HMAC (RFC 2104) as crypto/hmac computes it,
// for every hash, keys shorter than, as long as and longer than a block
// (hashed first), and data in pieces; the scratch keeps no key material
// after a computation.
func TestScratchHMACIsHMAC(t *testing.T) {
	s := new(scratch)
	for _, h := range []HashAlg{SHA1, SHA256, SHA384, SHA512} {
		for _, kl := range []int{0, 1, 20, 32, 63, 64, 65, 127, 128, 129, 300} {
			key := bytes.Repeat([]byte{byte(kl) | 1}, kl)
			for _, parts := range [][][]byte{nil, {[]byte("a")}, {[]byte("ab"), nil, bytes.Repeat([]byte{7}, 200)}} {
				m := hmac.New(h.new(), key)
				for _, p := range parts {
					m.Write(p)
				}
				want := m.Sum([]byte("prefix"))
				got := s.appendHMAC([]byte("prefix"), h, key, parts...)
				if !bytes.Equal(got, want) {
					t.Fatalf("%s, key of %d octets, %d parts: %x, want %x", h, kl, len(parts), got, want)
				}
			}
			if s.key != [maxBlock]byte{} || s.pad != [maxBlock]byte{} || s.sum != [maxSize]byte{} {
				t.Fatalf("%s: key material left in the scratch", h)
			}
		}
	}
}

// proves: N1 (issue 18: hmac.New per PRF was 7 allocations, four
// GROUPKEY-PULL HASHes and the key derivation per registration on a key
// server) — an established SA's PRFa allocates at most a third of what
// the same HMAC with crypto/hmac does, measured side by side (7 before;
// 1 after: the result), and the scratch is the Endpoint's, shared by its
// SAs.
func TestPRFaAllocations(t *testing.T) {
	p := newPair(t, pskConfig(), pskConfig())
	_, out, _ := p.i.Initiate(addrR, p.now)
	p.run(p.i, out)
	ei, er := p.i, p.r
	if len(er.SAs()) != 1 || len(ei.SAs()) != 1 {
		t.Fatal("not established")
	}
	sa := er.SAs()[0]
	if sa.sh != &er.sh || ei.SAs()[0].sh != &ei.sh {
		t.Fatal("an Endpoint's SAs do not share its scratch")
	}
	data := bytes.Repeat([]byte{3}, 100)
	key := sa.km.skeyidA(sa.suite.Hash)
	baseline := testing.AllocsPerRun(200, func() {
		m := hmac.New(sa.suite.Hash.new(), key)
		m.Write(data)
		m.Sum(nil)
	})
	want := hmac.New(sa.suite.Hash.new(), key)
	want.Write(data)
	if got := sa.PRFa(data); !bytes.Equal(got, want.Sum(nil)) {
		t.Fatal("PRFa is not HMAC with SKEYID_a")
	}
	got := testing.AllocsPerRun(200, func() { sa.PRFa(data) })
	t.Logf("PRFa: %.0f allocations, crypto/hmac %.0f", got, baseline)
	if got*3 > baseline {
		t.Fatalf("PRFa makes %.0f allocations, crypto/hmac %.0f: want at most a third", got, baseline)
	}
}
