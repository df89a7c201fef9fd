package app

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"regexp"
	"testing"

	"github.com/groupvpn/groupvpn/internal/mnemonic"
	"github.com/groupvpn/groupvpn/internal/syslog"
)

// proves: O3 (operators grep the daemons' stderr; issue 18 makes its
// lines cheaper) — a daemon's stderr lines are slog.TextHandler's, for the
// KS's line per registration and for lines the fast path leaves to slog
// (an error attribute, a derived logger), at both levels; and the KS's
// line costs one allocation through isakmpd's chain (the line's string:
// no fmt, no Addr.String, no handler buffer).
func TestDaemonLogIsSlogText(t *testing.T) {
	gm := netip.MustParseAddr("192.0.2.1")
	emit := func(l *slog.Logger) {
		mnemonic.Log(l, mnemonic.Notice, "KS_REGS_COMPLETE", "KS completed successful registration in group %s with GM %s.", "G1", gm)
		mnemonic.Log(l, mnemonic.Warning, "GM_REJECTING_SA_PAYLOAD", "Registration from %s for %s refused: %v", gm, "id \"x\"", errors.New("bad=1"))
		l.Info("metrics", "addr", "127.0.0.1:9100", "members", 60000, "err", errors.New("e"))
		l.With("peer", gm).Error("x y")
		l.Debug("debug line", "n", 1)
	}
	timeField := regexp.MustCompile(`(?m)^time=\S+ `)
	for _, debug := range []bool{false, true} {
		var got, want bytes.Buffer
		sinks := syslog.NewSinks(syslog.Options{App: "isakmpd"})
		l, _, _, err := daemonLogger(&got, "isakmpd", "", debug, sinks)
		if err != nil {
			t.Fatal(err)
		}
		level := slog.LevelInfo
		if debug {
			level = slog.LevelDebug
		}
		emit(l)
		emit(slog.New(slog.NewTextHandler(&want, &slog.HandlerOptions{Level: level})))
		g, w := timeField.ReplaceAllString(got.String(), "time=T "), timeField.ReplaceAllString(want.String(), "time=T ")
		if g != w || !bytes.Contains(got.Bytes(), []byte(`msg="%GDOI-5-KS_REGS_COMPLETE: KS completed successful registration in group G1 with GM 192.0.2.1." mnemonic=KS_REGS_COMPLETE`)) {
			t.Fatalf("debug %v: stderr\n%s\nslog.TextHandler's\n%s", debug, g, w)
		}
	}
	if raceEnabled {
		return // allocation counts differ under the race detector
	}
	sinks := syslog.NewSinks(syslog.Options{App: "isakmpd"})
	l, _, _, err := daemonLogger(io.Discard, "isakmpd", "", false, sinks)
	if err != nil {
		t.Fatal(err)
	}
	args := []any{"G1", gm} // boxed once, as a caller's arguments are beside this
	if n := testing.AllocsPerRun(100, func() {
		mnemonic.Log(l, mnemonic.Notice, "KS_REGS_COMPLETE", "KS completed successful registration in group %s with GM %s.", args...)
	}); n > 1 {
		t.Fatalf("%v allocations per KS_REGS_COMPLETE line, want 1", n)
	}
}

// BenchmarkDaemonLogKSRegsComplete is the key server's line per
// registration (internal/ks: KS_REGS_COMPLETE, a group name and a GM's
// address) through isakmpd's handler chain without -syslog (the stderr
// text handler and the configuration's sinks, none configured), to
// /dev/null: issue 18.
func BenchmarkDaemonLogKSRegsComplete(b *testing.B) {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	benchDaemonLog(b, f)
}

// BenchmarkDaemonLogKSRegsCompleteDiscard is that without the write(2).
func BenchmarkDaemonLogKSRegsCompleteDiscard(b *testing.B) {
	benchDaemonLog(b, io.Discard)
}

func benchDaemonLog(b *testing.B, w io.Writer) {
	sinks := syslog.NewSinks(syslog.Options{App: "isakmpd"})
	l, _, _, err := daemonLogger(w, "isakmpd", "", false, sinks)
	if err != nil {
		b.Fatal(err)
	}
	group, gm := "G1", netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		mnemonic.Log(l, mnemonic.Notice, "KS_REGS_COMPLETE", "KS completed successful registration in group %s with GM %s.", group, gm)
	}
}
