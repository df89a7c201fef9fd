package ks

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/isakmp"
)

// Pacing: at most RekeyBurst unicast rekeys leave per RekeyPace, so that
// thousands of GMs are not hit in the same millisecond (and the KS's
// socket buffer does not overflow).
const (
	RekeyBurst = 50
	RekeyPace  = 5 * time.Millisecond
)

// A scheduled rekey that cannot be built, reserved or saved is tried
// again after RetryFirst, the wait doubling after each failure up to
// RetryMax (a read-only or full disk must not make the owner's loop spin
// on Tick, logging and burning a sequence number every turn).
const (
	RetryFirst = time.Second
	RetryMax   = time.Minute
)

// SaveInterval is how often, at most, the delivery asks for changed state
// (members registered, ACKs, a delivery ended) to be written: a crash
// loses at most that much bookkeeping, never a key or a sequence number
// (those are written before the rekey that carries them is sent).
const SaveInterval = time.Second

// Bounds on a stored in-flight rekey (the record is integrity-checked, but
// a restart must not trust it with unbounded work).
const (
	maxStoredPush    = 64 << 10
	maxStoredPending = 1 << 20
)

// Datagram is one rekey datagram to send from the group's KS address.
type Datagram struct {
	Group string
	To    netip.AddrPort
	Data  []byte
}

// Result is what a call asks of the owner: datagrams to send (in order),
// when to call Tick next (zero: no timer), events to log, and group
// states to write when convenient (Save: the periodic save of
// bookkeeping; what crash safety needs was written before the call
// returned).
type Result struct {
	Send   []Datagram
	Timer  time.Time
	Events []Event
	Save   []*GroupState
}

// Event is something the owner logs or acts on.
type Event interface{ deliveryEvent() }

// RekeyStarted: a rekey's delivery began (the owner logs it with the
// address it leaves from: Server.LogRekey).
type RekeyStarted struct{ Push *Push }

// RekeySuperseded: a newer rekey of the group ended this one's delivery.
type RekeySuperseded struct {
	Group          string
	Seq            uint32
	Unacknowledged int
}

// RekeyCompleted: every member acknowledged the rekey or was given up on.
type RekeyCompleted struct {
	Group string
	Last  LastRekey
}

// RekeyResumed: a rekey in flight when the KS stopped is delivered again
// to the members that had not acknowledged it.
type RekeyResumed struct {
	Group   string
	Seq     uint32
	Members int
}

// RekeyFailed: the scheduled rekey of a group could not be built or
// saved; it is tried again at Retry.
type RekeyFailed struct {
	Group string
	Err   error
	Retry time.Time
}

// Reauthenticate: after a GM removal every member must authenticate
// again with the credentials configured now to get the new keys, so a
// revoked PSK or certificate keeps it out (SPEC R3): the owner deletes
// the phase-1 SAs these peers authenticated with.
type Reauthenticate struct {
	Group string
	Peers []netip.Addr
}

// BadAck: an acknowledgement under a KEK in flight failed authentication
// or came from another address than it names (unauthenticated input: the
// owner logs it rate-limited).
type BadAck struct {
	From netip.AddrPort
	Err  error
}

func (RekeyStarted) deliveryEvent()    {}
func (RekeySuperseded) deliveryEvent() {}
func (RekeyCompleted) deliveryEvent()  {}
func (RekeyResumed) deliveryEvent()    {}
func (RekeyFailed) deliveryEvent()     {}
func (BadAck) deliveryEvent()          {}
func (Reauthenticate) deliveryEvent()  {}

// LastRekey describes the last rekey delivery a group completed: every
// member acknowledged, or was given up on after its retransmissions (a
// multicast rekey: after all of them). A superseded delivery does not
// complete.
type LastRekey struct {
	Seq         uint32
	Started     time.Time
	Took        time.Duration // from the first transmission to completion
	Retransmits int           // datagrams sent again
}

// AckStats count the acknowledgements the delivery received (SPEC S5).
type AckStats struct {
	OK        uint64 // verified
	Malformed uint64 // does not parse
	Unknown   uint64 // no rekey in flight under its KEK (late or forged)
	Bad       uint64 // fails authentication, or names another address
}

// Delivery is the key server's rekey delivery (RFC 6407 §4, RFC 8263):
// the schedule, the sequence number reserved on disk before each rekey,
// unicast pacing, retransmission, acknowledgements, members dropped after
// missed ACKs, a newer rekey superseding an older one, and the rekey in
// flight resumed after a restart. It does no I/O of its own: the owner
// feeds it ACKs and the time, sends what it returns, and calls Tick at
// Result.Timer; persistence goes through the Store given to NewDelivery.
// Like Server, it is owned by one goroutine.
type Delivery struct {
	srv     *Server
	store   Store // nil: nothing kept
	flights []*flight
	last    map[string]LastRekey // by group: the last delivery completed
	paused  map[string]bool      // groups whose KS address is not served
	retry   map[string]retry     // groups whose scheduled rekey failed
	stats   AckStats
	// dirty: a delivery ended or was superseded since the last save: the
	// stored state is stale.
	dirty    bool
	lastSave time.Time
}

// flight is one rekey on its way to the members.
type flight struct {
	multicast bool // to a group: no ACKs, every retransmission sent
	push      *Push
	queue     []netip.AddrPort        // first transmissions not sent yet
	old       map[netip.AddrPort]bool // members that get push.OldData (SPEC P6)
	pending   map[netip.Addr]*target  // sent, not acknowledged
	// order is pending in the order of its retransmission times (each a
	// transmission plus the policy's Retransmit, appended as they are
	// sent: sorted), from head on; an entry whose stamp is not its
	// target's (acknowledged, or sent again since) is skipped. A step
	// looks at the targets due, not at every one pending (issue 18: a
	// rekey to 100,000 silent members took 104 s of the loop in steps
	// that each walked all of them).
	order  []dueEntry
	head   int
	stamp  uint32
	next   time.Time // next pacing or retransmission step; zero: held
	sent   time.Time // when it started
	done   time.Time // when the last member acknowledged (zero: not yet)
	resent int       // retransmissions sent
}

// retry is when a group's failed scheduled rekey is tried again, and the
// wait that led there (doubled at the next failure).
type retry struct {
	at   time.Time
	wait time.Duration
}

type target struct {
	to    netip.AddrPort
	data  []byte
	sent  int
	retry time.Time
	stamp uint32 // its entry in flight.order
}

// dueEntry is a pending target's place in flight.order.
type dueEntry struct {
	addr  netip.Addr
	stamp uint32
}

// schedule puts t, retransmitted at t.retry, at the end of f.order.
func (f *flight) schedule(addr netip.Addr, t *target) {
	f.stamp++
	t.stamp = f.stamp
	if f.head > 1024 && f.head > len(f.order)/2 {
		f.order = append(f.order[:0], f.order[f.head:]...)
		f.head = 0
	}
	f.order = append(f.order, dueEntry{addr: addr, stamp: t.stamp})
}

// NewDelivery returns the delivery of srv's rekeys, keeping state in st
// (nil: nothing is kept).
func NewDelivery(srv *Server, st Store) *Delivery {
	return &Delivery{srv: srv, store: st, last: map[string]LastRekey{}, paused: map[string]bool{}, retry: map[string]retry{}}
}

// Restore loads the groups' state from the store (a restart) and writes
// the current state back (a first start). A rekey that was still being
// delivered when the KS stopped is held until the owner calls Serve for
// its group, then delivered again to the members that had not
// acknowledged it.
func (d *Delivery) Restore(now time.Time) (Result, error) {
	var res Result
	if d.store == nil {
		return res, nil
	}
	stored, err := d.store.LoadGroups()
	if err != nil {
		return res, err
	}
	for _, g := range stored {
		if err := d.srv.Restore(g, now); err != nil {
			d.srv.log.Warn("stored state not restored", "group", g.Name, "err", err)
			continue
		}
		d.srv.log.Info("key server state restored", "group", g.Name, "seq", g.SeqReserved, "members", len(g.Members))
		if f := d.resumed(g); f != nil {
			d.flights = append(d.flights, f)
			res.Events = append(res.Events, RekeyResumed{Group: g.Name, Seq: f.push.Seq, Members: len(f.queue)})
		}
	}
	for _, name := range d.srv.Groups() {
		gs, err := d.state(name, nil, now)
		if err == nil {
			err = d.store.SaveGroup(gs)
		}
		if err != nil {
			return res, fmt.Errorf("saving group %s: %w", name, err)
		}
		d.srv.membersSaved(name) // the periodic saves go on from it
	}
	d.lastSave = now
	res.Timer = d.Next()
	return res, nil
}

// resumed is the held flight of g's interrupted rekey, or nil: none was in
// flight, a newer rekey was built since, or the record is out of bounds.
func (d *Delivery) resumed(g *GroupState) *flight {
	f := g.InFlight
	if f == nil || f.Seq != g.Seq || len(f.Data) == 0 || len(f.Data) > maxStoredPush || len(f.OldData) > maxStoredPush ||
		len(f.Pending)+len(f.PendingOld) > maxStoredPending || len(f.Pending)+len(f.PendingOld) == 0 {
		return nil
	}
	p := &Push{Group: g.Name, Seq: f.Seq, Data: f.Data, OldData: f.OldData, KEK: gdoi.KEK{SPI: f.KEKSPI, Key: f.KEKKey},
		Policy: d.srv.RekeyPolicy(g.Name), Removal: f.Removal, NewKEK: f.NewKEK, Members: f.Pending, OldMembers: f.PendingOld}
	fl := &flight{push: p, pending: map[netip.Addr]*target{}, old: map[netip.AddrPort]bool{}, sent: f.Sent}
	fl.queue = append(fl.queue, f.Pending...)
	for _, m := range f.PendingOld {
		if len(f.OldData) == 0 {
			continue
		}
		fl.queue = append(fl.queue, m)
		fl.old[m] = true
	}
	return fl // next zero: held until Serve
}

// Hold stops sending the group's rekeys (its KS address is not served by
// any socket): the schedule skips it and its deliveries pause.
func (d *Delivery) Hold(group string) {
	d.paused[group] = true
	for _, f := range d.flights {
		if f.push.Group == group {
			f.next = time.Time{}
		}
	}
}

// Serve lets the group's rekeys leave again (and starts a rekey resumed
// after a restart).
func (d *Delivery) Serve(group string, now time.Time) Result {
	delete(d.paused, group)
	for _, f := range d.flights {
		if f.push.Group == group && f.next.IsZero() {
			f.next = now
		}
	}
	return Result{Timer: d.Next()}
}

// Held reports whether the group's rekeys are held (Hold).
func (d *Delivery) Held(group string) bool { return d.paused[group] }

// Rekey builds the group's next rekey and starts delivering it: the
// scheduler's rekey, and `crypto gdoi ks rekey` without replace.
func (d *Delivery) Rekey(group string, now time.Time) (Result, error) {
	if err := d.srv.CheckPrimaryRekey(group); err != nil {
		return Result{}, err // a secondary: the primary rekeys (COOP)
	}
	want, err := d.reserve(group)
	if err != nil {
		return Result{}, err
	}
	u := d.srv.checkpoint(group)
	p, err := d.srv.Rekey(group, now)
	if err != nil {
		d.srv.rollback(u)
		return Result{}, err
	}
	res, err := d.start(group, p, want, now)
	if err != nil {
		d.srv.rollback(u)
	}
	return res, err
}

// ReplaceRekey is `crypto gdoi ks [group NAME] rekey [replace-now]`: the
// policy-replace rekey (SPEC P2-P6).
func (d *Delivery) ReplaceRekey(group string, replaceNow bool, now time.Time) (*Push, Result, error) {
	if err := d.srv.CheckPrimaryRekey(group); err != nil {
		return nil, Result{}, err
	}
	want, err := d.reserve(group)
	if err != nil {
		return nil, Result{}, err
	}
	mode := isakmp.ModeShorten
	if replaceNow {
		mode = isakmp.ModeNow
	}
	u := d.srv.checkpoint(group)
	p, err := d.srv.ReplaceRekey(group, mode, now)
	if err != nil {
		d.srv.rollback(u)
		return nil, Result{}, err
	}
	res, err := d.start(group, p, want, now)
	if err != nil {
		d.srv.rollback(u)
		return nil, Result{}, err
	}
	return p, res, nil
}

// Remove is `clear crypto gdoi [group NAME] ks members [now]` (SPEC
// R1-R4): the removal message to every member, and new keys at the KS;
// the members must authenticate again (Reauthenticate).
func (d *Delivery) Remove(group string, removeNow bool, now time.Time) (*Push, Result, error) {
	if err := d.srv.CheckPrimaryRemoval(group); err != nil {
		return nil, Result{}, err
	}
	want, err := d.reserve(group)
	if err != nil {
		return nil, Result{}, err
	}
	u := d.srv.checkpoint(group)
	p, err := d.srv.Remove(group, removeNow, now)
	if err != nil {
		d.srv.rollback(u)
		return nil, Result{}, err
	}
	res, err := d.start(group, p, want, now)
	if err != nil {
		d.srv.rollback(u)
		return nil, Result{}, err
	}
	res.Events = append(res.Events, Reauthenticate{Group: group, Peers: d.srv.MemberAddrs(group)})
	return p, res, nil
}

// reserve reserves the next sequence number on disk (0 without a store).
func (d *Delivery) reserve(group string) (uint32, error) {
	if d.store == nil {
		return 0, nil
	}
	_, to, err := d.store.ReserveSeq(group, 1)
	if err != nil {
		return 0, fmt.Errorf("rekey for group %s not sent: %w", group, err)
	}
	if need := d.srv.Seq(group) + 1; to < need {
		// The group's number was raised by COOP (adopted or announced
		// by a peer, TakeOver's margin): reserve up to it.
		if _, to, err = d.store.ReserveSeq(group, need-to); err != nil {
			return 0, fmt.Errorf("rekey for group %s not sent: %w", group, err)
		}
	}
	d.srv.SetSeqFloor(group, to-1)
	return to, nil
}

// start saves the group's new state (write before send: its keys and
// its members) and starts delivering p. When it fails, nothing changed in
// the delivery (the caller puts the group back: Server.rollback): the
// older deliveries are superseded only once p is saved.
//
// The members are written with the keys (SaveGroup, not SaveKeys): the
// members registered since the last periodic save enter the new keys with
// their sender IDs (carrySIDs), and a restart must know them, or it hands
// their IDs out again under those keys (identical AES-GCM nonces; issue
// 18 review). The store writes only the members that changed
// (store.SaveGroup's digests).
func (d *Delivery) start(group string, p *Push, want uint32, now time.Time) (Result, error) {
	if d.store != nil && p.Seq != want {
		return Result{}, fmt.Errorf("rekey for group %s: sequence %d is not the reserved %d", group, p.Seq, want)
	}
	f := &flight{push: p, queue: append([]netip.AddrPort(nil), p.Members...), pending: map[netip.Addr]*target{}, next: now,
		old: map[netip.AddrPort]bool{}, sent: now}
	for _, m := range p.OldMembers {
		f.queue = append(f.queue, m)
		f.old[m] = true
	}
	if mc := p.Policy.Multicast; mc.IsValid() {
		// One datagram to the group, sent again every retransmission
		// interval: no acknowledgements come back from a group.
		f.multicast = true
		f.queue = []netip.AddrPort{mc}
	}
	if d.store != nil {
		gs, err := d.state(group, f, now)
		if err == nil {
			err = d.store.SaveGroup(gs)
		}
		if err != nil {
			return Result{}, fmt.Errorf("rekey for group %s not sent: saving its new keys: %w", group, err)
		}
		// Every member written: the next periodic save lists what
		// changes after this (a failed write changes nothing: the
		// members changed stay listed, and the writer keeps a delta
		// queued before, kswriter.Writer.SaveGroup).
		d.srv.membersSaved(group)
	}
	delete(d.retry, group)
	res := Result{Events: d.supersede(group)}
	res.Events = append(res.Events, RekeyStarted{Push: p})
	d.flights = append(d.flights, f)
	if d.paused[group] {
		f.next = time.Time{}
	} else {
		d.step(f, now, &res)
	}
	res.Timer = d.Next()
	return res, nil
}

// supersede ends the deliveries of group's older rekeys when a new one
// starts (a manual rekey while one is in flight): the new rekey carries
// every current TEK, so members see sequence numbers only rise and only
// the newest rekey is retransmitted. An older rekey that brought a new KEK
// goes on to the members that have not acknowledged it: the new rekey is
// encrypted under that KEK, which they would lack.
func (d *Delivery) supersede(group string) []Event {
	var evs []Event
	keep := d.flights[:0]
	for _, f := range d.flights {
		if f.push.Group == group && (f.multicast || !f.push.NewKEK) {
			d.dirty = true
			evs = append(evs, RekeySuperseded{Group: group, Seq: f.push.Seq, Unacknowledged: len(f.pending) + len(f.queue)})
			continue
		}
		keep = append(keep, f)
	}
	clear(d.flights[len(keep):])
	d.flights = keep
	return evs
}

// Tick runs the rekey schedule, the deliveries' pacing and
// retransmissions that are due, and the periodic save.
func (d *Delivery) Tick(now time.Time) Result {
	var res Result
	for _, g := range d.srv.Groups() {
		at := d.srv.NextRekey(g)
		if at.IsZero() || !d.srv.Primary(g) || now.Before(at) || now.Before(d.retry[g].at) || d.inFlight(g) || d.paused[g] {
			continue
		}
		r, err := d.Rekey(g, now)
		if err != nil {
			w := min(max(2*d.retry[g].wait, RetryFirst), RetryMax)
			d.retry[g] = retry{at: now.Add(w), wait: w}
			res.Events = append(res.Events, RekeyFailed{Group: g, Err: err, Retry: now.Add(w)})
			continue
		}
		res.Send = append(res.Send, r.Send...)
		res.Events = append(res.Events, r.Events...)
	}
	for i := 0; i < len(d.flights); i++ {
		f := d.flights[i]
		if !f.next.IsZero() && !now.Before(f.next) {
			d.step(f, now, &res)
		}
		if len(f.queue) == 0 && len(f.pending) == 0 {
			end := now
			if !f.done.IsZero() {
				end = f.done
			}
			lr := LastRekey{Seq: f.push.Seq, Started: f.sent, Took: max(end.Sub(f.sent), 0), Retransmits: f.resent}
			d.last[f.push.Group] = lr
			res.Events = append(res.Events, RekeyCompleted{Group: f.push.Group, Last: lr})
			d.flights = append(d.flights[:i], d.flights[i+1:]...)
			d.dirty = true
			i--
		}
	}
	if d.store != nil && now.Sub(d.lastSave) >= SaveInterval && (d.srv.Dirty() || d.dirty) {
		// The members changed since the last periodic save only
		// (Server.DeltaState, issue 18: a whole group of 100,000 copied
		// on the loop and digested by the store every second cost ~9%
		// of the KS's CPU); the owner's writer merges a delta it has not
		// written yet with the next (kswriter).
		for _, name := range d.srv.Groups() {
			gs, err := d.srv.DeltaState(name, now)
			if err != nil {
				continue // the group is configured: cannot happen
			}
			d.withFlight(gs, nil)
			res.Save = append(res.Save, gs)
		}
		d.srv.MarkSaved()
		d.dirty = false
		d.lastSave = now
	}
	res.Timer = d.Next()
	return res
}

// Next is when Tick should run next (zero: no timer).
func (d *Delivery) Next() time.Time {
	var next time.Time
	earlier := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, f := range d.flights {
		earlier(f.next)
	}
	for _, g := range d.srv.Groups() {
		// As Tick: a group's rekey waits for its flight to end (the
		// flight's own next step is counted above, and the Tick that
		// ends the flight asks again). Counting it here kept the timer
		// in the past for the whole flight (issue 18 review).
		if at := d.srv.NextRekey(g); !d.paused[g] && !at.IsZero() && d.srv.Primary(g) && !d.inFlight(g) {
			earlier(later(at, d.retry[g].at))
		}
	}
	if d.store != nil && (d.srv.Dirty() || d.dirty) {
		// The once-a-second save is a timer too: without it, a member
		// registered after the last save waits for some other event.
		earlier(d.lastSave.Add(SaveInterval))
	}
	return next
}

// later is the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func (d *Delivery) inFlight(group string) bool {
	for _, f := range d.flights {
		if f.push.Group == group {
			return true
		}
	}
	return false
}

// InFlight is the number of rekeys still being delivered.
func (d *Delivery) InFlight() int { return len(d.flights) }

// Flight describes one rekey being delivered (tests, show commands).
type Flight struct {
	Push      *Push
	Queued    int // first transmissions not sent yet
	Pending   int // sent, not acknowledged
	Next      time.Time
	Multicast bool
}

// Flights describes the rekeys being delivered, oldest first.
func (d *Delivery) Flights() []Flight {
	out := make([]Flight, 0, len(d.flights))
	for _, f := range d.flights {
		out = append(out, Flight{Push: f.push, Queued: len(f.queue), Pending: len(f.pending), Next: f.next, Multicast: f.multicast})
	}
	return out
}

// LastRekeys is, by group, the last rekey delivery completed (a copy).
func (d *Delivery) LastRekeys() map[string]LastRekey {
	out := make(map[string]LastRekey, len(d.last))
	for g, lr := range d.last {
		out[g] = lr
	}
	return out
}

// Stats are the acknowledgement counters.
func (d *Delivery) Stats() AckStats { return d.stats }

// step sends the next paced burst and the retransmissions that are due,
// and gives up on members whose last transmission went unanswered.
func (d *Delivery) step(f *flight, now time.Time, res *Result) {
	budget := RekeyBurst
	for len(f.queue) > 0 && budget > 0 {
		to := f.queue[0]
		f.queue = f.queue[1:]
		data := f.push.Data
		if f.old[to] {
			data = f.push.OldData
		}
		res.Send = append(res.Send, Datagram{Group: f.push.Group, To: to, Data: data})
		t := &target{to: to, data: data, sent: 1, retry: now.Add(f.push.Policy.Retransmit)}
		f.pending[to.Addr()] = t
		f.schedule(to.Addr(), t)
		if !f.multicast {
			d.srv.Sent(f.push.Group, to.Addr(), false)
		}
		budget--
	}
	next := time.Time{}
	if len(f.queue) > 0 {
		next = now.Add(RekeyPace)
	}
	for f.head < len(f.order) {
		e := f.order[f.head]
		addr := e.addr
		t := f.pending[addr]
		if t == nil || t.stamp != e.stamp {
			f.head++ // acknowledged or given up on, or sent again since
			continue
		}
		if now.Before(t.retry) {
			// The first not due: every later one is due later.
			if next.IsZero() || t.retry.Before(next) {
				next = t.retry
			}
			break
		}
		f.head++
		if t.sent > f.push.Policy.Retransmits {
			delete(f.pending, addr)
			if !f.multicast {
				d.srv.Missed(f.push.Group, addr)
			}
			continue
		}
		if budget > 0 {
			res.Send = append(res.Send, Datagram{Group: f.push.Group, To: t.to, Data: t.data})
			t.sent++
			f.resent++
			if !f.multicast {
				d.srv.Sent(f.push.Group, t.to.Addr(), true)
			}
			budget--
		}
		t.retry = now.Add(f.push.Policy.Retransmit)
		f.schedule(addr, t)
		if next.IsZero() || t.retry.Before(next) {
			next = t.retry
		}
	}
	f.next = next
}

// Ack handles a GROUPKEY-PUSH acknowledgement (RFC 8263) from a member.
func (d *Delivery) Ack(from netip.AddrPort, data []byte, now time.Time) Result {
	var res Result
	m, err := isakmp.ParseMessage(data)
	if err != nil {
		d.stats.Malformed++
		return res
	}
	var spi [isakmp.KEKSPILen]byte
	copy(spi[:8], m.Header.InitiatorCookie[:])
	copy(spi[8:], m.Header.ResponderCookie[:])
	for _, f := range d.flights {
		if f.push.KEK.SPI != spi {
			continue
		}
		seq, addr, err := gdoi.OpenAck(m, f.push.KEK)
		if err == nil && addr != from.Addr() {
			err = errors.New("the acknowledgement names another address")
		}
		if err != nil {
			d.stats.Bad++
			res.Events = append(res.Events, BadAck{From: from, Err: err})
			return res
		}
		if seq != f.push.Seq {
			continue // of another rekey under this KEK (superseded, late)
		}
		d.stats.OK++
		if _, ok := f.pending[addr]; ok {
			delete(f.pending, addr)
			d.srv.Acked(f.push.Group, addr, seq)
		}
		if len(f.queue) == 0 && len(f.pending) == 0 {
			f.next = now // done: the next Tick removes it
			f.done = now
		}
		res.Timer = d.Next()
		return res
	}
	d.stats.Unknown++ // late, superseded or unknown
	return res
}

// state is the group's state to store: the server's, with the newest
// unicast rekey still unacknowledged by some members (f, or the newest
// flight when f is nil).
func (d *Delivery) state(name string, f *flight, now time.Time) (*GroupState, error) {
	gs, err := d.srv.State(name, now)
	if err != nil {
		return nil, err
	}
	d.withFlight(gs, f)
	return gs, nil
}

// withFlight adds to gs the newest unicast rekey of its group still
// unacknowledged by some members (f, or the newest flight when f is nil).
func (d *Delivery) withFlight(gs *GroupState, f *flight) {
	name := gs.Name
	if f == nil {
		for _, x := range d.flights {
			if x.push.Group == name && (f == nil || x.push.Seq > f.push.Seq) {
				f = x
			}
		}
	}
	if f == nil || f.multicast || len(f.queue)+len(f.pending) == 0 {
		return
	}
	ps := &PushState{Seq: f.push.Seq, KEKSPI: f.push.KEK.SPI, KEKKey: f.push.KEK.Key, Data: f.push.Data, OldData: f.push.OldData,
		Removal: f.push.Removal, NewKEK: f.push.NewKEK, Sent: f.sent}
	add := func(to netip.AddrPort) {
		if f.old[to] {
			ps.PendingOld = append(ps.PendingOld, to)
		} else {
			ps.Pending = append(ps.Pending, to)
		}
	}
	for _, to := range f.queue {
		add(to)
	}
	for _, t := range f.pending {
		add(t.to)
	}
	gs.InFlight = ps
}

// Adopt takes the primary's keys from its announcement (Server.AdoptKeys)
// and, when they changed, forwards them to the GMs registered with this
// KS (Server.Forward) under the KEK those hold: saved before sent, as any
// rekey. merge: this KS lost a merge (the forward activates at once).
// changed reports whether the keys changed.
func (d *Delivery) Adopt(group string, sa *isakmp.GroupSA, kd *isakmp.KD, seq uint32, merge bool, now time.Time) (res Result, changed bool, err error) {
	u := d.srv.checkpoint(group)
	ownKeys := !d.srv.Adopted(group) // it served keys of its own until now
	changed, prev, err := d.srv.AdoptKeys(group, sa, kd, seq, now)
	if err != nil || !changed {
		return Result{Timer: d.Next()}, false, err
	}
	// The forward activates at once (ATD 0) after a merge and when the
	// GMs here hold keys of this KS's own (registered before any primary
	// was heard): the primary's GMs already hold the adopted TEKs and
	// never had this KS's, so the GMs here must send with the adopted ones
	// at once (the newest TEK whose activation has come seals); with the
	// usual ATD they would go on sending for 30 s with TEKs the primary's
	// GMs cannot open. Their old TEKs stay open for receiving until the
	// rekey's DTD (RekeyDTD), then are gone: retired, never deleted at
	// once, so no GM is ever without a valid TEK (docs/coop.md).
	atd := RekeyATD
	if merge || ownKeys {
		atd = 0
	}
	newKEK := prev.SPI != d.srv.KEK(group).SPI
	var p *Push
	if d.srv.RekeyPolicy(group).Multicast.IsValid() && !merge && !ownKeys {
		// Multicast: the primary's rekey reached every GM of the group,
		// those registered here too; only GMs on keys of this KS's own
		// (a merge, or keys served before any primary was heard) need
		// them forwarded.
	} else {
		p, err = d.srv.Forward(group, prev, newKEK, atd, now)
	}
	if err != nil {
		d.srv.rollback(u)
		return Result{}, false, err
	}
	if p == nil {
		// No GM to forward to: the adopted keys are saved with the
		// next periodic save (Dirty), or at once here with a store,
		// with the members who carry their IDs into them (start).
		if d.store != nil {
			gs, err := d.state(group, nil, now)
			if err == nil {
				err = d.store.SaveGroup(gs)
			}
			if err != nil {
				d.srv.rollback(u)
				return Result{}, false, fmt.Errorf("adopting the primary's keys for group %s: %w", group, err)
			}
			d.srv.membersSaved(group)
		}
		return Result{Timer: d.Next()}, true, nil
	}
	var want uint32
	if d.store != nil {
		_, to, err := d.store.ReserveSeq(group, 1)
		if err == nil && to < p.Seq {
			_, to, err = d.store.ReserveSeq(group, p.Seq-to)
		}
		if err != nil {
			d.srv.rollback(u)
			return Result{}, false, fmt.Errorf("forward for group %s not sent: %w", group, err)
		}
		want = to
	}
	res, err = d.start(group, p, want, now)
	if err != nil {
		d.srv.rollback(u)
		return Result{}, false, err
	}
	return res, true, nil
}
