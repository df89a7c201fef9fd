// Package udpserve is the goroutine that owns a sans-IO IKE endpoint
// (ike.Endpoint, ikev2.Endpoint) on real sockets (DESIGN.md §3): socket
// readers hand it datagrams through a channel, callers hand it commands,
// and it arms one timer for the endpoint's next deadline. internal/ikeudp
// and internal/ikev2udp run their endpoints with it.
package udpserve

import (
	"context"
	"net/netip"
	"time"
)

// Endpoint is what the loop drives: ike.Endpoint and ikev2.Endpoint, O
// their Output.
type Endpoint[O any] interface {
	Handle(from netip.AddrPort, pkt []byte, now time.Time) O
	Tick(now time.Time) O
	NextTimer() time.Time
}

// Datagram is one datagram read, for Run.
type Datagram struct {
	From netip.AddrPort
	Data []byte
}

// Loop owns an endpoint; deliver carries out what it returns (sends,
// events), on the loop's goroutine.
type Loop[E Endpoint[O], O any] struct {
	ep      E
	now     func() time.Time
	deliver func(O)
	cmds    chan func()
}

// New returns the loop of ep; now is the clock.
func New[E Endpoint[O], O any](ep E, now func() time.Time, deliver func(O)) *Loop[E, O] {
	return &Loop[E, O]{ep: ep, now: now, deliver: deliver, cmds: make(chan func())}
}

// Do runs f on the goroutine that owns the endpoint (Run) and waits for
// it; what f returns is delivered.
func (l *Loop[E, O]) Do(ctx context.Context, f func(ep E, now time.Time) O) error {
	done := make(chan struct{})
	cmd := func() {
		defer close(done)
		l.deliver(f(l.ep, l.now()))
	}
	select {
	case l.cmds <- cmd:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run serves the datagrams of in, commands and the endpoint's timer until
// ctx ends (its error) or in is closed (closed, the socket's end).
func (l *Loop[E, O]) Run(ctx context.Context, in <-chan Datagram, closed error) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if next := l.ep.NextTimer(); !next.IsZero() {
			timer.Reset(max(next.Sub(l.now()), 0))
		} else {
			timer.Reset(time.Hour)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case d, ok := <-in:
			if !ok {
				return closed
			}
			l.deliver(l.ep.Handle(d.From, d.Data, l.now()))
		case cmd := <-l.cmds:
			cmd()
		case <-timer.C:
			l.deliver(l.ep.Tick(l.now()))
		}
	}
}
