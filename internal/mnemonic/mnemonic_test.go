package mnemonic

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
)

// proves: O3 — a %GDOI line carries the IOS facility, severity digit and
// mnemonic, at the slog level of its severity, with the mnemonic as an
// attribute; a nil logger still returns the line.
func TestLogLine(t *testing.T) {
	var b bytes.Buffer
	l := slog.New(slog.NewTextHandler(&b, nil))
	got := Log(l, Notice, "KS_REGS_COMPLETE", "KS completed successful registration in group %s with GM %s.", "G", "192.0.2.1")
	want := "%GDOI-5-KS_REGS_COMPLETE: KS completed successful registration in group G with GM 192.0.2.1."
	if got != want {
		t.Fatalf("Log = %q, want %q", got, want)
	}
	if !strings.Contains(b.String(), `level=INFO msg="`+want+`" mnemonic=KS_REGS_COMPLETE`) {
		t.Errorf("logged %q", b.String())
	}
	b.Reset()
	LogFacility(l, "SYS", Warning, "X", "y")
	if !strings.Contains(b.String(), `level=WARN msg="%SYS-4-X: y"`) {
		t.Errorf("logged %q", b.String())
	}
	b.Reset()
	Log(l, Alert, "UNAUTHORIZED_IDENTITY", "z")
	if !strings.Contains(b.String(), `level=ERROR msg="%GDOI-1-UNAUTHORIZED_IDENTITY: z"`) {
		t.Errorf("logged %q", b.String())
	}
	if Log(nil, Err, "E", "e") != "%GDOI-3-E: e" {
		t.Error("nil logger")
	}
}

// proves: issue 18 (logging per registration: the line is formatted once)
// — LogFacility's line is byte for byte the two-pass format it replaced,
// for the operator texts and for malformed formats alike.
func TestLogFacilityOnePassSameText(t *testing.T) {
	cases := []struct {
		fac, mn, format string
		args            []any
	}{
		{"GDOI", "KS_REGS_COMPLETE", "KS completed successful registration in group %s with GM %s.", []any{"G1", "192.0.2.1"}},
		{"SYS", "CONFIG_I", "Configured from console by %s on %s", []any{"admin", "vty0"}},
		{"GDOI", "X", "%d%% of %v", []any{50, []int{1, 2}}},
		{"GDOI", "Y", "missing %s %s", []any{"one"}},
		{"GDOI", "Z", "extra", []any{1}},
		{"CRYPTO_ENGINE", strings.Repeat("M", 200), strings.Repeat("t", 300) + " %s", []any{strings.Repeat("a", 500)}},
	}
	for _, sev := range []Severity{Alert, Crit, Err, Warning, Notice, Info} {
		for _, c := range cases {
			want := fmt.Sprintf("%%%s-%d-%s: %s", c.fac, int(sev), c.mn, fmt.Sprintf(c.format, c.args...))
			if got := LogFacility(nil, c.fac, sev, c.mn, c.format, c.args...); got != want {
				t.Fatalf("LogFacility = %q, want %q", got, want)
			}
		}
	}
}

type named string

type stringer struct{}

func (stringer) String() string { return "stringer" }

// proves: issue 18 (the KS's line per registration formatted without fmt)
// — LogFacility's line is fmt's for the formats and arguments appendSimple
// formats itself (plain %s, %v, %d, %% of strings, addresses and
// integers) and for everything near them it leaves to fmt (flags, widths,
// other verbs, named and other types, zero addresses, missing and extra
// arguments, a trailing %).
func TestLogFacilitySimpleIsFmt(t *testing.T) {
	a4, a6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	zone, mapped := netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("::ffff:10.0.0.1")
	argSets := [][]any{
		{"G1", a4}, {"G1", a6}, {"", zone}, {"x", mapped}, {"G", netip.Addr{}},
		{"G", netip.AddrPortFrom(a4, 848)}, {"G", netip.AddrPortFrom(a6, 0)}, {"G", netip.AddrPortFrom(mapped, 1)},
		{"G", netip.AddrPort{}}, {"G", netip.AddrPortFrom(netip.Addr{}, 5)},
		{1, -2}, {int64(-9223372036854775808), uint64(18446744073709551615)}, {uint32(7), "s"},
		{"only"}, {"a", "b", "c"}, {}, {named("n"), "x"}, {stringer{}, a4}, {nil, a4}, {&a4, "p"},
		{int8(3), uint8(4)}, {3.5, true}, {[]byte("b"), errors.New("e")}, {"é\n\x00", "%s"},
	}
	formats := []string{
		"KS completed successful registration in group %s with GM %s.", "%v and %v", "%d/%d", "%s %d",
		"%v %v %v", "%%s %s %% %s%%", "%s", "%s %s %s", "no verbs", "", "trailing %", "%5s %s", "%-s %s",
		"%q %s", "%x %s", "%+v %s", "%#v %v", "%[2]s %[1]s", "%*d %d", "%s %!", "100%% %s %s",
	}
	n := 0
	for _, f := range formats {
		for _, args := range argSets {
			want := "%GDOI-5-M: " + fmt.Sprintf(f, args...)
			if got := LogFacility(nil, "GDOI", Notice, "M", f, args...); got != want {
				t.Errorf("LogFacility(%q, %#v) = %q, fmt's %q", f, args, got, want)
			}
			if _, ok := appendSimple(nil, f, args); ok {
				n++
			}
		}
	}
	if n < 20 {
		t.Fatalf("appendSimple formatted only %d of the cases itself", n)
	}
}

// proves: issue 18 — the KS's line per registration (a group name and a
// GM's netip.Addr) costs one allocation, the line's string: no fmt, no
// Addr.String.
func TestLogKSRegsCompleteAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	l := slog.New(slog.DiscardHandler)
	args := []any{"G1", netip.MustParseAddr("192.0.2.1")} // boxed once, as a caller's arguments are beside this
	var line string
	if n := testing.AllocsPerRun(100, func() {
		line = Log(l, Notice, "KS_REGS_COMPLETE", "KS completed successful registration in group %s with GM %s.", args...)
	}); n > 1 {
		t.Fatalf("%v allocations per line, want 1", n)
	}
	if want := "%GDOI-5-KS_REGS_COMPLETE: KS completed successful registration in group G1 with GM 192.0.2.1."; line != want {
		t.Fatalf("line %q, want %q", line, want)
	}
}

// BenchmarkLogKSRegsComplete is the KS's line per registration to a text
// handler, as isakmpd's stderr gets it.
func BenchmarkLogKSRegsComplete(b *testing.B) {
	l := slog.New(slog.NewTextHandler(io.Discard, nil))
	b.ReportAllocs()
	for b.Loop() {
		Log(l, Notice, "KS_REGS_COMPLETE", "KS completed successful registration in group %s with GM %s.", "G1", "192.0.2.1")
	}
}

// FuzzLogFacilitySimple: for any format and arguments of the types
// appendSimple formats, LogFacility's line is fmt's.
func FuzzLogFacilitySimple(f *testing.F) {
	f.Add("KS completed successful registration in group %s with GM %s.", "G1", []byte{192, 0, 2, 1}, int64(848), uint8(0))
	f.Add("%d%% %v %s %x", "é", []byte{32: 1}, int64(-1), uint8(9))
	f.Fuzz(func(t *testing.T, format, s string, ip []byte, i int64, pick uint8) {
		a, _ := netip.AddrFromSlice(ip)
		pool := []any{s, a, netip.AddrPortFrom(a, uint16(i)), int(i), i, uint32(i), uint64(i)}
		var args []any
		for k := range int(pick % 4) {
			args = append(args, pool[(int(pick)/4+k)%len(pool)])
		}
		want := "%GDOI-5-M: " + fmt.Sprintf(format, args...)
		if got := LogFacility(nil, "GDOI", Notice, "M", format, args...); got != want {
			t.Fatalf("LogFacility(%q, %#v) = %q, fmt's %q", format, args, got, want)
		}
	})
}
