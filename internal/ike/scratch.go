package ike

import (
	"hash"
	"log/slog"
	"net/netip"
	"time"

	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

// shared is what the SAs of one Endpoint share: its local address and the
// working memory of their cryptography. One goroutine owns an Endpoint and
// its SAs (DESIGN.md §3), so one scratch serves them all.
type shared struct {
	local       netip.AddrPort
	unauth      *slog.Logger     // the Endpoint's bounded logger (SA.unauthLogger); nil without one
	halfOpenTTL time.Duration    // a responder's life in MM2_SENT without message 3 (Limits.HalfOpenTimeout)
	scratch     *scratch         // made on first use
	vids        []isakmp.Payload // SA.vendorIDs, for version vidsFor
	vidsFor     version.Version
	// addrID is the address identity SA.ourID sends, for addrIDFor.
	addrID    *isakmp.ID
	addrIDFor netip.Addr
	// tf holds the attributes of the transform of suite tfFor
	// (transformAttrs).
	tf    *suiteTransform
	tfFor Suite
}

// maxFree bounds the released main-mode states an Endpoint keeps.
const maxFree = 64

// newMMState returns a main-mode state started at now: a released one
// if the scratch keeps any, else a new one.
func (sh *shared) newMMState(now time.Time) *mmState {
	if sh != nil && sh.scratch != nil {
		if free := sh.scratch.free; len(free) > 0 {
			hs := free[len(free)-1]
			free[len(free)-1] = nil
			sh.scratch.free = free[:len(free)-1]
			*hs = mmState{startedAt: now}
			return hs
		}
	}
	return &mmState{startedAt: now}
}

// recycle clears a responder's main-mode state no SA refers to any more,
// so that no key material or reference outlives its SA's use of it, and
// keeps it for newMMState.
func (sh *shared) recycle(hs *mmState) {
	*hs = mmState{}
	if sh != nil && sh.scratch != nil && len(sh.scratch.free) < maxFree {
		sh.scratch.free = append(sh.scratch.free, hs)
	}
}

// transformAttrs returns the attributes of suite s's KEY_IKE transform.
// They are made once per suite and shared by the SAs, which only encode
// them (a key server chooses one transform per registration, in message
// 2); the slice is full, so an append copies it.
func (sh *shared) transformAttrs(s Suite) isakmp.Attributes {
	if sh == nil {
		return s.fillTransform(new(suiteTransform), 0).Attributes
	}
	if sh.tf == nil || sh.tfFor != s {
		sh.tf, sh.tfFor = new(suiteTransform), s
		s.fillTransform(sh.tf, 0)
	}
	return sh.tf.attrs[:len(sh.tf.attrs):len(sh.tf.attrs)]
}

func (sh *shared) scr() *scratch {
	if sh == nil {
		return new(scratch)
	}
	if sh.scratch == nil {
		sh.scratch = new(scratch)
	}
	return sh.scratch
}

// scratch is the working memory of the PRF: one hash state per hash
// algorithm, reset and reused, and the HMAC's pads, instead of an
// hmac.New per computation (7 allocations each: a key server computes
// about ten per registration; issue 18). Nothing a caller gets back
// points into it, except the payloads of a pre-shared-key message 5 or 6
// that decryptPhase1 decrypts into plain: they live until releasePlain
// clears it, when the message is handled.
type scratch struct {
	hashes [4]hash.Hash // SHA-1, SHA-256, SHA-384, SHA-512
	pad    [maxBlock]byte
	key    [maxBlock]byte
	sum    [maxSize]byte
	// out holds HASH_I or HASH_R until the message carrying it is
	// encoded or the peer's is compared (SA.hashFor); body, an ID
	// payload's body while it is hashed. Neither is key material.
	out  [maxSize]byte
	body []byte
	word [4]byte // a short input of a hash: a Message ID, deriveKeys' 0, 1, 2
	// plain is a pre-shared-key main mode's message 5 or 6 decrypted
	// while its SA handles it (decryptPhase1; its ID is copied, its HASH
	// compared), cleared after (issue 18: an allocation per registration).
	plain [maxPlain]byte
	// free holds main-mode states the Endpoint's responders released
	// (SA.release), cleared, for newResponder to reuse, at most maxFree
	// of them. A key server's member proves it has message 6 with its
	// first pull, which releases the state, so one registration's serves
	// the next without an allocation of its 448 octets (issue 18). In
	// the scratch, whose size class has room for it, not in the
	// Endpoint, whose has not: a load generator keeps an Endpoint per
	// member.
	free []*mmState
	// proposal is message 1's SA payload of the Endpoint's initiators
	// (shared.proposal).
	proposal *initProposal
}

// maxPlain is the longest message 5 or 6 body decrypted in the scratch:
// an ID, a HASH and a Notify or two (INITIAL-CONTACT); a longer one gets
// a buffer of its own.
const maxPlain = 256

// idBody returns id's body encoded in s, valid until the next call.
func (s *scratch) idBody(id *isakmp.ID) []byte {
	s.body = id.AppendBody(s.body[:0])
	return s.body
}

const (
	maxBlock = 128 // SHA-384's and SHA-512's block size
	maxSize  = 64  // SHA-512's output size
)

// hash returns s's state for h, reset.
func (s *scratch) hash(h HashAlg) hash.Hash {
	i := 0
	switch h {
	case SHA1:
		i = 0
	case SHA256:
		i = 1
	case SHA384:
		i = 2
	case SHA512:
		i = 3
	default:
		return h.new()() // panics for an unsupported hash, as before
	}
	d := s.hashes[i]
	if d == nil {
		d = h.new()()
		s.hashes[i] = d
	} else {
		d.Reset()
	}
	return d
}

// appendHMAC appends HMAC-h(key, data...) (RFC 2104) to dst, computed in
// s: H((K ^ opad) | H((K ^ ipad) | data)), K the key padded to the hash's
// block size with zeros (hashed first when longer than a block).
func (s *scratch) appendHMAC(dst []byte, h HashAlg, key []byte, data ...[]byte) []byte {
	d := s.hash(h)
	bs := d.BlockSize()
	k := s.key[:bs]
	if len(key) > bs {
		d.Write(key)
		n := copy(k, d.Sum(s.sum[:0]))
		clear(k[n:])
		d.Reset()
	} else {
		n := copy(k, key)
		clear(k[n:])
	}
	pad := s.pad[:bs]
	for i := range pad {
		pad[i] = k[i] ^ 0x36
	}
	d.Write(pad)
	for _, b := range data {
		d.Write(b)
	}
	inner := d.Sum(s.sum[:0])
	d.Reset()
	for i := range pad {
		pad[i] = k[i] ^ 0x5c
	}
	d.Write(pad)
	d.Write(inner)
	out := d.Sum(dst)
	// No key material stays in the scratch: the key, its pads, the inner
	// digest, and the hash state keyed with the outer pad.
	d.Reset()
	clear(k)
	clear(pad)
	clear(s.sum[:])
	return out
}

// appendDigest appends h(data...) to dst.
func (s *scratch) appendDigest(dst []byte, h HashAlg, data ...[]byte) []byte {
	d := s.hash(h)
	for _, b := range data {
		d.Write(b)
	}
	return d.Sum(dst)
}
