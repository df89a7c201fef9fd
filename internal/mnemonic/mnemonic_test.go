package mnemonic

import (
	"bytes"
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
