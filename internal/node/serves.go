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
// whole table (issue 18 F2). One map of SAs holds the exchanges
// themselves: a pull's message 1 probes it 3 times, its message 3 once
// (issue 18: 5 times and once, in two maps of every member's SA, when a
// map by SA and message ID held them and another indexed their message
// IDs by SA).
type serveTable struct {
	bySA   map[*ike.SA]saServes // the exchanges served over each SA
	n      int                  // exchanges held
	order  []servedAt           // in start order; entries no longer held are skipped
	head   int                  // order[:head] are popped
	swept  time.Time            // the last expire
	probes int                  // probes of bySA: a test bounds them per registration
}

// saServes are the exchanges served over one SA: the first in place, as
// an SA most often carries one, the others behind a pointer (issue 18: a
// slice of its own for every registration, and 32 octets in the map's
// slots, which keep their number after a registration storm).
type saServes struct {
	first midServing
	rest  *[]midServing
}

// midServing is one exchange and its message ID.
type midServing struct {
	mid uint32
	s   *serving
}

// get returns the exchange of message ID mid, nil if none.
func (e saServes) get(mid uint32) *serving {
	if e.first.mid == mid {
		return e.first.s
	}
	if e.rest != nil {
		for _, x := range *e.rest {
			if x.mid == mid {
				return x.s
			}
		}
	}
	return nil
}

// count is how many exchanges e holds.
func (e saServes) count() int {
	if e.rest == nil {
		return 1
	}
	return 1 + len(*e.rest)
}

// replace puts s in the place of mid's exchange and reports whether e
// held one.
func (e *saServes) replace(mid uint32, s *serving) bool {
	if e.first.mid == mid {
		e.first.s = s
		return true
	}
	if e.rest != nil {
		for i := range *e.rest {
			if (*e.rest)[i].mid == mid {
				(*e.rest)[i].s = s
				return true
			}
		}
	}
	return false
}

// with is e with mid's exchange s, which e does not hold, added.
func (e saServes) with(mid uint32, s *serving) saServes {
	if e.rest == nil {
		e.rest = new([]midServing)
	}
	*e.rest = append(*e.rest, midServing{mid, s})
	return e
}

// without is e without mid's exchange, which it holds, and whether any
// is left.
func (e saServes) without(mid uint32) (saServes, bool) {
	var rest []midServing
	if e.rest != nil {
		rest = *e.rest
	}
	if e.first.mid == mid {
		if len(rest) == 0 {
			return saServes{}, false
		}
		e.first = rest[0]
		rest[0] = midServing{} // the array no longer holds the exchange once it is deleted
		rest = rest[1:]
	} else if i := slices.IndexFunc(rest, func(x midServing) bool { return x.mid == mid }); i >= 0 {
		rest = append(rest[:i:i], rest[i+1:]...)
	}
	if len(rest) == 0 {
		e.rest = nil
	} else {
		e.rest = &rest
	}
	return e, true
}

type servedAt struct {
	key serveKey
	s   *serving
}

// serveSweep is how often at most the node looks for served exchanges
// past serveLinger.
const serveSweep = time.Second

func newServeTable() serveTable {
	return serveTable{bySA: map[*ike.SA]saServes{}}
}

func (t *serveTable) len() int { return t.n }

func (t *serveTable) get(k serveKey) *serving {
	s, _ := t.lookup(k)
	return s
}

// lookup returns the exchange k, nil if none, and how many exchanges
// k's SA holds, in one probe.
func (t *serveTable) lookup(k serveKey) (*serving, int) {
	t.probes++
	if e, ok := t.bySA[k.sa]; ok {
		return e.get(k.mid), e.count()
	}
	return nil, 0
}

// add keeps s under k, instead of the exchange k held if any; its start
// must not precede the last one added (the node's clock: a step back only
// delays its expiry).
func (t *serveTable) add(k serveKey, s *serving) {
	t.probes += 2 // read, written
	e, ok := t.bySA[k.sa]
	switch {
	case !ok:
		e = saServes{first: midServing{k.mid, s}}
		t.n++
	case e.replace(k.mid, s):
		// The exchange k held is no longer held: its entry of order is
		// skipped.
	default:
		e = e.with(k.mid, s)
		t.n++
	}
	t.bySA[k.sa] = e
	t.order = append(t.order, servedAt{k, s})
}

// del forgets the exchange k.
func (t *serveTable) del(k serveKey) {
	t.probes++
	e, ok := t.bySA[k.sa]
	if !ok || e.get(k.mid) == nil {
		return
	}
	t.n--
	t.probes++
	if e, left := e.without(k.mid); left {
		t.bySA[k.sa] = e
	} else {
		delete(t.bySA, k.sa)
	}
}

// dropSA forgets the exchanges served over sa.
func (t *serveTable) dropSA(sa *ike.SA) {
	if e, ok := t.bySA[sa]; ok {
		t.n -= e.count()
		delete(t.bySA, sa)
	}
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
		if t.get(e.key) == e.s {
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
		if t.get(e.key) == e.s {
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
