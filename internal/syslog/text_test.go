package syslog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // America/New_York wherever the test runs

	"github.com/groupvpn/groupvpn/internal/testnet"
)

// textOracle writes the records with slog.TextHandler and with
// TextHandler (both made with opts, then derive when not nil) and returns
// both outputs.
func textOracle(t testing.TB, opts *slog.HandlerOptions, derive func(slog.Handler) slog.Handler, rs ...slog.Record) (want, got string) {
	t.Helper()
	var wb, gb bytes.Buffer
	var want0, got0 slog.Handler = slog.NewTextHandler(&wb, opts), NewTextHandler(&gb, opts)
	if derive != nil {
		want0, got0 = derive(want0), derive(got0)
	}
	ctx := context.Background()
	for _, r := range rs {
		if we, ge := want0.Enabled(ctx, r.Level), got0.Enabled(ctx, r.Level); we != ge {
			t.Fatalf("Enabled(%v) = %v, slog.TextHandler's %v", r.Level, ge, we)
		}
		werr := want0.Handle(ctx, r.Clone())
		gerr := got0.Handle(ctx, r.Clone())
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("Handle error %v, slog.TextHandler's %v", gerr, werr)
		}
	}
	return wb.String(), gb.String()
}

type logValuer string

func (v logValuer) LogValue() slog.Value { return slog.StringValue("lv:" + string(v)) }

type textMarshaler string

func (m textMarshaler) MarshalText() ([]byte, error) { return []byte("tm " + m), nil }

// proves: O3 (operators grep the daemons' stderr lines; issue 18 makes
// them cheaper) — TextHandler's lines are slog.TextHandler's byte for
// byte: times in several zones and out of range, every level, messages
// and keys that need quoting or not (spaces, '=', quotes, backslashes,
// control characters, DEL, invalid UTF-8, Unicode spaces and non-printing
// runes), values of every kind, and the records and handlers it leaves to
// slog (groups, LogValuers, any, empty keys, WithAttrs, WithGroup,
// ReplaceAttr, AddSource).
func TestTextHandlerMatchesSlog(t *testing.T) {
	east := time.FixedZone("E", 5*3600+30*60)
	west := time.FixedZone("W", -(3*3600 + 17*60 + 9))
	base := time.Date(2026, 12, 6, 23, 47, 55, 123456789, time.UTC)
	times := []time.Time{
		{}, base, base.In(east), base.In(west), base.Local(), time.Now(),
		time.Date(2026, 1, 2, 3, 4, 5, 999999999, time.UTC), time.Date(2026, 1, 2, 3, 4, 5, 0, east),
		time.Date(0, 1, 1, 0, 0, 0, 1e6, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC),
		time.Date(12345, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	levels := []slog.Level{slog.LevelDebug - 4, slog.LevelDebug, slog.LevelInfo, slog.LevelInfo + 2, slog.LevelWarn, slog.LevelWarn - 1, slog.LevelError, slog.LevelError + 8}
	strs := []string{
		"", "x", "%GDOI-5-KS_REGS_COMPLETE: KS completed successful registration in group G1 with GM 192.0.2.1.",
		"a b", "a=b", `say "hi"`, `back\slash`, `\`, `"`, "tab\there", "nl\nx", "cr\r", "nul\x00", "del\x7f", "del\x7fand space",
		"é", "é è", "日本語", "\xff", "a\xffb c", "\xed\xa0\x80", "\ufffd", "nbsp\u00a0", "ls\u2028", "zwsp\u200b", "bom\ufeff",
		"\U0001F600 emoji", "~!@#$%^&*()_+-{}|[]:;'<>?,./`", strings.Repeat("long ", 5000),
	}
	attrs := []slog.Attr{
		slog.String("mnemonic", "KS_REGS_COMPLETE"), slog.Int("n", -42), slog.Int64("big", math.MinInt64),
		slog.Uint64("u", math.MaxUint64), slog.Float64("f", 3.25), slog.Float64("nan", math.NaN()),
		slog.Float64("inf", math.Inf(-1)), slog.Float64("tiny", 1e-300), slog.Bool("ok", true), slog.Bool("no", false),
		slog.Duration("d", 1500*time.Millisecond), slog.Duration("z", 0), slog.Time("at", base.In(west)),
		slog.Time("zero", time.Time{}), slog.String("", "empty key"), slog.String("", ""),
		slog.Any("err", errors.New("boom")), slog.Any("nil", nil), slog.Any("lv", logValuer("x")),
		slog.Any("tm", textMarshaler("y")), slog.Any("bytes", []byte("b y")), slog.Group("g", slog.Int("a", 1), slog.String("b", "c d")),
		slog.Group("empty"), slog.Group("", slog.Int("inl", 1)),
	}
	for _, s := range strs {
		attrs = append(attrs, slog.String(s, s))
	}
	n := 0
	check := func(opts *slog.HandlerOptions, derive func(slog.Handler) slog.Handler, r slog.Record) {
		t.Helper()
		n++
		if want, got := textOracle(t, opts, derive, r); got != want {
			t.Fatalf("record %d: TextHandler wrote\n%q\nslog.TextHandler\n%q", n, got, want)
		}
	}
	for i, tm := range times {
		for j, l := range levels {
			for k, s := range strs {
				r := slog.NewRecord(tm, l, s, 0)
				// A few attributes each, every one in turn, past the
				// five a Record holds inline.
				for m := 0; m < (i+j+k)%8; m++ {
					r.AddAttrs(attrs[(i*7+j*3+k+m)%len(attrs)])
				}
				check(nil, nil, r)
				check(&slog.HandlerOptions{Level: slog.LevelDebug}, nil, r)
			}
		}
	}
	for _, a := range attrs {
		r := slog.NewRecord(base, slog.LevelInfo, "m", 0)
		r.AddAttrs(slog.String("mnemonic", "M"), a)
		check(nil, nil, r)
		for _, opts := range []*slog.HandlerOptions{
			{AddSource: true},
			{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr { a.Key = strings.ToUpper(a.Key); return a }},
		} {
			check(opts, nil, r)
		}
		check(nil, func(h slog.Handler) slog.Handler { return h.WithAttrs([]slog.Attr{slog.String("k", "v w")}) }, r)
		check(nil, func(h slog.Handler) slog.Handler { return h.WithGroup("grp") }, r)
		check(nil, func(h slog.Handler) slog.Handler { return h.WithGroup("").WithAttrs(nil) }, r)
	}
}

// FuzzTextHandler: for any message, key, string and number, a level and a
// time in any zone, and a second line at another time and in another
// zone, TextHandler writes what slog.TextHandler writes.
func FuzzTextHandler(f *testing.F) {
	f.Add("%GDOI-5-KS_REGS_COMPLETE: KS completed successful registration in group G1 with GM 192.0.2.1.", "mnemonic", "KS_REGS_COMPLETE", int64(1), 0.5, 0, int64(1796608075123456789), 0)
	f.Add("a \"b\" \\ c=d\t\n\x7f\xff é \u2028", "k=v", "", int64(-1), math.Inf(1), 4, int64(0), -3600)
	f.Add("", "", "\x00", int64(math.MinInt64), math.NaN(), -4, int64(-1), 5*3600+1)
	f.Fuzz(func(t *testing.T, msg, key, val string, i int64, fl float64, level int, unixNano int64, offset int) {
		tm := time.Time{}
		if unixNano != 0 {
			tm = time.Unix(0, unixNano).In(time.FixedZone("Z", offset%(48*3600)))
		}
		r := slog.NewRecord(tm, slog.Level(level), msg, 0)
		r.AddAttrs(slog.String(key, val), slog.String("mnemonic", val), slog.Int64(key+"i", i), slog.Float64("f", fl),
			slog.Duration(val, time.Duration(i)), slog.Time("t", tm), slog.Uint64("u", uint64(i)))
		if i%3 == 0 {
			r.AddAttrs(slog.Any("any", val))
		}
		// r2 in tm's zone within the same second or after it (the kept
		// second and zone reused or replaced), r3 in another zone.
		r2 := slog.NewRecord(tm.Add(time.Duration(i)%(2*time.Second)), slog.LevelInfo, val, 0)
		r3 := slog.NewRecord(tm.Add(time.Duration(i)).In(time.FixedZone("Y", offset/7)), slog.LevelInfo, val, 0)
		if want, got := textOracle(t, &slog.HandlerOptions{Level: slog.LevelDebug - 8}, nil, r, r2, r3); got != want {
			t.Fatalf("TextHandler wrote\n%q\nslog.TextHandler\n%q", got, want)
		}
	})
}

// proves: issue 18's durability rule — every line, fast or slow, is one
// Write made before Handle returns, and lines of concurrent goroutines
// never interleave.
func TestTextHandlerOneWritePerLine(t *testing.T) {
	var w testnet.Writes
	h := NewTextHandler(&w, nil)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 100 {
				msg := fmt.Sprint("line ", g, "/", i)
				r := slog.NewRecord(time.Now(), slog.LevelInfo, msg, 0)
				if (g+i)%2 == 0 {
					r.AddAttrs(slog.Int("fast", i))
				} else {
					r.AddAttrs(slog.Any("slow", []int{i}))
				}
				if err := h.Handle(context.Background(), r); err != nil {
					t.Error(err)
				}
				written := slices.ContainsFunc(w.Each(), func(l string) bool { return strings.Contains(l, strconv.Quote(msg)) })
				if !written {
					t.Errorf("Handle returned before its line %q was written", msg)
				}
			}
		})
	}
	wg.Wait()
	lines := w.Each()
	if len(lines) != 400 {
		t.Fatalf("%d writes for 400 lines", len(lines))
	}
	for _, l := range lines {
		if strings.Count(l, "\n") != 1 || !strings.HasSuffix(l, "\n") || !strings.HasPrefix(l, "time=") {
			t.Fatalf("write %q is not one line", l)
		}
	}
}

// proves: the buffer a TextHandler keeps stays bounded after a long line.
func TestTextHandlerDropsLongBuffer(t *testing.T) {
	h := NewTextHandler(io.Discard, nil).(*TextHandler)
	h.Handle(context.Background(), slog.NewRecord(time.Now(), slog.LevelInfo, strings.Repeat("x", 2*maxKeep), 0))
	if cap(h.st.buf) > maxKeep {
		t.Fatalf("kept %d bytes", cap(h.st.buf))
	}
	h.Handle(context.Background(), slog.NewRecord(time.Now(), slog.LevelInfo, "short", 0))
	if cap(h.st.buf) == 0 {
		t.Fatal("a short line's buffer is not kept")
	}
}

// proves: the time a TextHandler keeps from line to line (the second
// before the milliseconds) writes what slog.TextHandler writes, for
// lines a millisecond to seconds apart, in zones that change between
// lines, across a daylight saving change and a leap of the year's digits.
func TestTextHandlerTimeAcrossLines(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	zones := []*time.Location{time.UTC, time.Local, ny, time.FixedZone("odd", -(3*3600 + 17*60 + 9)), time.FixedZone("UTC", 0)}
	starts := []time.Time{
		time.Date(2026, 12, 6, 23, 59, 58, 990e6, time.UTC),
		time.Date(2026, 3, 8, 6, 59, 59, 995e6, time.UTC),  // 2:00 EST becomes 3:00 EDT
		time.Date(2026, 11, 1, 5, 59, 59, 995e6, time.UTC), // 2:00 EDT becomes 1:00 EST
		time.Date(9999, 12, 31, 23, 59, 59, 995e6, time.UTC),
		time.Date(-1, 12, 31, 23, 59, 59, 995e6, time.UTC),
	}
	steps := []time.Duration{time.Millisecond, 999 * time.Microsecond, 37 * time.Millisecond, time.Second, time.Hour}
	var wb, gb bytes.Buffer
	want, got := slog.NewTextHandler(&wb, nil), NewTextHandler(&gb, nil)
	ctx := context.Background()
	n := 0
	for _, start := range starts {
		for _, step := range steps {
			for k := range 40 {
				tm := start.Add(time.Duration(k) * step).In(zones[(k/3)%len(zones)])
				if k%11 == 0 {
					tm = time.Time{}
				}
				r := slog.NewRecord(tm, slog.LevelInfo, "m", 0)
				r.AddAttrs(slog.Time("at", tm))
				want.Handle(ctx, r)
				got.Handle(ctx, r)
				n++
			}
		}
	}
	if wb.String() != gb.String() {
		w, g := strings.Split(wb.String(), "\n"), strings.Split(gb.String(), "\n")
		for i := range w {
			if i < len(g) && w[i] != g[i] {
				t.Fatalf("line %d: TextHandler wrote\n%q\nslog.TextHandler\n%q", i, g[i], w[i])
			}
		}
		t.Fatalf("%d lines, slog.TextHandler's %d", len(g), len(w))
	}
	if strings.Count(gb.String(), "\n") != n {
		t.Fatalf("%d lines for %d records", strings.Count(gb.String(), "\n"), n)
	}
}
