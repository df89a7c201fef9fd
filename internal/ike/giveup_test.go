package ike

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// silentRun starts main mode from ei toward a peer that answers only the
// first `answered` messages (none: silent), runs the endpoints' timers
// with a fake clock, and returns the initiator's transmission instants
// (from t0) and when and how it failed.
func silentRun(t *testing.T, cfgI, cfgR *Config, answered int) (sends []time.Duration, failedAt time.Duration, err error) {
	t.Helper()
	ei, _ := NewEndpoint(cfgI, addrI, Limits{})
	er, _ := NewEndpoint(cfgR, addrR, Limits{})
	now := t0
	_, out, e := ei.Initiate(addrR, now)
	if e != nil {
		t.Fatal(e)
	}
	delivered := 0
	for range 100 {
		for len(out.Send) > 0 {
			var next Output
			for _, p := range out.Send {
				sends = append(sends, now.Sub(t0))
				if delivered >= answered {
					continue // lost, or the peer says nothing
				}
				delivered++
				for _, back := range er.Handle(addrI, p.Data, now).Send {
					o := ei.Handle(addrR, back.Data, now)
					next.Send = append(next.Send, o.Send...)
					next.Events = append(next.Events, o.Events...)
				}
			}
			for _, ev := range append(out.Events, next.Events...) {
				if f, ok := ev.Event.(Failed); ok {
					return sends, now.Sub(t0), f.Err
				}
			}
			out = Output{Send: next.Send}
		}
		at := ei.NextTimer()
		if at.IsZero() {
			t.Fatal("no timer and no failure")
		}
		now = at
		out = ei.Tick(now)
		for _, ev := range out.Events {
			if f, ok := ev.Event.(Failed); ok {
				return sends, now.Sub(t0), f.Err
			}
		}
	}
	t.Fatal("main mode neither failed nor settled")
	return
}

// proves: N1 (issue 18 item 3: an initiator gives up on a silent key
// server within Retransmit.GiveUp, 30 s by default (46 s before: the
// retransmission schedule alone), configurable, with the transmissions the
// schedule allows before; timers stepped with a fake clock)
func TestInitiatorGiveUpTime(t *testing.T) {
	for _, c := range []struct {
		name     string
		rt       Retransmit
		answered int
		sends    string
		failedAt time.Duration
	}{
		{"default, silent peer", Retransmit{}, 0, "[0s 2s 6s 14s]", 30 * time.Second},
		{"default, stalled after message 2", Retransmit{}, 1, "[0s 0s 2s 6s 14s]", 30 * time.Second},
		{"give-up alone set", Retransmit{GiveUp: 10 * time.Second}, 0, "[0s 2s 6s]", 10 * time.Second},
		{"schedule and give-up", Retransmit{Initial: time.Second, Max: 4 * time.Second, Tries: 10, GiveUp: 12 * time.Second}, 0, "[0s 1s 3s 7s 11s]", 12 * time.Second},
		{"no bound but the tries", Retransmit{Initial: 2 * time.Second, Max: 16 * time.Second, Tries: 5, GiveUp: -1}, 0, "[0s 2s 6s 14s 30s]", 46 * time.Second},
		{"tries before the give-up", Retransmit{Initial: time.Second, Max: 4 * time.Second, Tries: 3}, 0, "[0s 1s 3s]", 7 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfgI, cfgR := pskConfig(), pskConfig()
			cfgI.Retransmit = c.rt
			sends, failedAt, err := silentRun(t, cfgI, cfgR, c.answered)
			if !errors.Is(err, ErrTimeout) {
				t.Fatalf("failure %v, want ErrTimeout", err)
			}
			if fmt.Sprint(sends) != c.sends || failedAt != c.failedAt {
				t.Fatalf("transmissions at %v, failed at %v; want %s and %v", sends, failedAt, c.sends, c.failedAt)
			}
		})
	}
}

// proves: groundwork (retransmission; issue 18 item 3) — the give-up time
// is an initiator's: a responder whose message 4 goes unanswered keeps
// retransmitting it on the schedule (2, 4, 8, 16 s) and fails after its
// tries (46 s), whatever GiveUp says.
func TestResponderIgnoresGiveUp(t *testing.T) {
	cfg := pskConfig()
	cfg.Retransmit = Retransmit{GiveUp: 5 * time.Second}
	ei, _ := NewEndpoint(pskConfig(), addrI, Limits{})
	er, _ := NewEndpoint(cfg, addrR, Limits{})
	_, out, _ := ei.Initiate(addrR, t0)
	mm2 := er.Handle(addrI, out.Send[0].Data, t0)
	mm3 := ei.Handle(addrR, mm2.Send[0].Data, t0)
	mm4 := er.Handle(addrI, mm3.Send[0].Data, t0) // message 4 is lost, the initiator says no more
	if len(mm4.Send) != 1 {
		t.Fatal("no message 4")
	}
	var sends []time.Duration
	for at := er.NextTimer(); !at.IsZero(); at = er.NextTimer() {
		o := er.Tick(at)
		for range o.Send {
			sends = append(sends, at.Sub(t0))
		}
		for _, ev := range o.Events {
			if f, ok := ev.Event.(Failed); ok {
				if !errors.Is(f.Err, ErrTimeout) || at.Sub(t0) != 46*time.Second || fmt.Sprint(sends) != "[2s 6s 14s 30s]" {
					t.Fatalf("failed at %v (%v) after retransmissions at %v; want 46s after [2s 6s 14s 30s]", at.Sub(t0), f.Err, sends)
				}
				return
			}
		}
	}
	t.Fatal("the responder never gave up")
}
