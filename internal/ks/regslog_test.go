package ks

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/groupvpn/groupvpn/internal/mnemonic"
)

// proves: the KS_REGS_COMPLETE line, formatted on the stack
// (logRegsComplete), is byte for byte the line of mnemonic.Log with the
// group name and address as arguments (operators grep it), and costs
// one allocation (the line's string), not three (the two arguments boxed
// into ...any besides: issue 18).
func TestLogRegsCompleteIsMnemonicLog(t *testing.T) {
	const format = "KS completed successful registration in group %s with GM %s."
	for _, group := range []string{"G", "GETVPN-100% of it", "", strings.Repeat("long-group-name/", 12)} {
		for _, a := range []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("127.64.255.254"),
			netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("::ffff:10.0.0.1"), {}} {
			var got, want []string
			logRegsComplete(slog.New(recordMessages{&got}), group, a)
			mnemonic.Log(slog.New(recordMessages{&want}), mnemonic.Notice, "KS_REGS_COMPLETE", format, group, a)
			if len(got) != 1 || len(want) != 1 || got[0] != want[0] {
				t.Fatalf("group %q, GM %v: logged %q, want %q", group, a, got, want)
			}
			if line := "%GDOI-5-KS_REGS_COMPLETE: " + fmt.Sprintf(format, group, a); got[0] != line {
				t.Fatalf("group %q, GM %v: logged %q, fmt formats %q", group, a, got[0], line)
			}
		}
	}
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	l := slog.New(slog.DiscardHandler)
	a := netip.MustParseAddr("127.64.1.2")
	if n := testing.AllocsPerRun(100, func() { logRegsComplete(l, "GETVPN", a) }); n > 1 {
		t.Fatalf("%v allocations per line, want 1", n)
	}
}

// recordMessages is a slog handler that keeps the messages it gets.
type recordMessages struct{ msgs *[]string }

func (recordMessages) Enabled(context.Context, slog.Level) bool { return true }
func (h recordMessages) Handle(_ context.Context, r slog.Record) error {
	*h.msgs = append(*h.msgs, r.Message)
	return nil
}
func (h recordMessages) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordMessages) WithGroup(string) slog.Handler      { return h }
