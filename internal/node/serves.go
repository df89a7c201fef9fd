package node

import (
	"slices"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
)

// serveTable holds the GROUPKEY-PULL exchanges the KS served, for the
// GMs' retransmissions, for serveLinger after each started. It is indexed
// by phase-1 SA (a failed or deleted SA drops its exchanges at the cost of
// its own) and keeps the exchanges in start order (expiry pops from the
// front), so neither a datagram nor the deletion of 100,000 SAs walks the
// whole table (issue 18 F2).
type serveTable struct {
	m     map[serveKey]*serving
	bySA  map[*ike.SA]saMIDs // message IDs of the SA's exchanges in m
	order []servedAt         // in start order; entries no longer in m are skipped
	head  int                // order[:head] are popped
	swept time.Time          // the last expire
}

// saMIDs are the message IDs of one SA's exchanges: the first in place,
// as an SA most often carries one, the others behind a pointer (issue 18:
// a slice of its own for every registration, and 24 octets in the map's
// buckets, which keep their size after a registration storm).
type saMIDs struct {
	first uint32
	rest  *[]uint32
}

// each calls f with every message ID.
func (s saMIDs) each(f func(mid uint32)) {
	f(s.first)
	if s.rest != nil {
		for _, mid := range *s.rest {
			f(mid)
		}
	}
}

// with is s with mid added.
func (s saMIDs) with(mid uint32) saMIDs {
	if s.rest == nil {
		s.rest = new([]uint32)
	}
	*s.rest = append(*s.rest, mid)
	return s
}

// without is s without mid, and whether any is left.
func (s saMIDs) without(mid uint32) (saMIDs, bool) {
	var rest []uint32
	if s.rest != nil {
		rest = *s.rest
	}
	if s.first == mid {
		if len(rest) == 0 {
			return saMIDs{}, false
		}
		s.first = rest[0]
		rest = rest[1:]
	} else if i := slices.Index(rest, mid); i >= 0 {
		rest = append(rest[:i:i], rest[i+1:]...)
	}
	if len(rest) == 0 {
		s.rest = nil
	} else {
		s.rest = &rest
	}
	return s, true
}

type servedAt struct {
	key serveKey
	s   *serving
}

// serveSweep is how often at most the node looks for served exchanges
// past serveLinger.
const serveSweep = time.Second

func newServeTable() serveTable {
	return serveTable{m: map[serveKey]*serving{}, bySA: map[*ike.SA]saMIDs{}}
}

func (t *serveTable) len() int { return len(t.m) }

func (t *serveTable) get(k serveKey) *serving { return t.m[k] }

// add keeps s under k; its start must not precede the last one added (the
// node's clock: a step back only delays its expiry).
func (t *serveTable) add(k serveKey, s *serving) {
	if old := t.m[k]; old != nil {
		t.del(k)
	}
	t.m[k] = s
	if mids, ok := t.bySA[k.sa]; ok {
		t.bySA[k.sa] = mids.with(k.mid)
	} else {
		t.bySA[k.sa] = saMIDs{first: k.mid}
	}
	t.order = append(t.order, servedAt{k, s})
}

// del forgets the exchange k.
func (t *serveTable) del(k serveKey) {
	if _, ok := t.m[k]; !ok {
		return
	}
	delete(t.m, k)
	if mids, left := t.bySA[k.sa].without(k.mid); left {
		t.bySA[k.sa] = mids
	} else {
		delete(t.bySA, k.sa)
	}
}

// dropSA forgets the exchanges served over sa.
func (t *serveTable) dropSA(sa *ike.SA) {
	if mids, ok := t.bySA[sa]; ok {
		mids.each(func(mid uint32) { delete(t.m, serveKey{sa, mid}) })
	}
	delete(t.bySA, sa)
}

// due is when the node next sweeps: when the oldest exchange kept passes
// serveLinger, but not within serveSweep of the last sweep (zero: nothing
// to sweep).
func (t *serveTable) due() time.Time {
	next := t.next()
	if next.IsZero() {
		return next
	}
	if s := t.swept.Add(serveSweep); next.Before(s) {
		return s
	}
	return next
}

// next is when the oldest exchange kept passes serveLinger (zero: none).
func (t *serveTable) next() time.Time {
	for t.head < len(t.order) {
		e := t.order[t.head]
		if t.m[e.key] == e.s {
			return e.s.started.Add(serveLinger)
		}
		t.pop()
	}
	return time.Time{}
}

// expire forgets the exchanges started more than serveLinger before now,
// oldest first, and has their SAs forget the message IDs.
func (t *serveTable) expire(now time.Time) {
	t.swept = now
	for t.head < len(t.order) {
		e := t.order[t.head]
		if t.m[e.key] == e.s {
			if now.Sub(e.s.started) <= serveLinger {
				return
			}
			e.key.sa.ForgetMessageID(e.key.mid)
			t.del(e.key)
		}
		t.pop()
	}
}

// pop drops order's front; the slice is compacted once half of it is
// popped, so its size stays within twice the exchanges of serveLinger.
func (t *serveTable) pop() {
	t.order[t.head] = servedAt{}
	t.head++
	if t.head == len(t.order) {
		t.order, t.head = t.order[:0], 0
	} else if t.head > 1024 && t.head*2 > len(t.order) {
		n := copy(t.order, t.order[t.head:])
		clear(t.order[n:])
		t.order, t.head = t.order[:n], 0
	}
}
