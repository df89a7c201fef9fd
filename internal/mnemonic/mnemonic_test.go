package mnemonic

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
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

// BenchmarkLogKSRegsComplete is the KS's line per registration to a text
// handler, as isakmpd's stderr gets it.
func BenchmarkLogKSRegsComplete(b *testing.B) {
	l := slog.New(slog.NewTextHandler(io.Discard, nil))
	b.ReportAllocs()
	for b.Loop() {
		Log(l, Notice, "KS_REGS_COMPLETE", "KS completed successful registration in group %s with GM %s.", "G1", "192.0.2.1")
	}
}
