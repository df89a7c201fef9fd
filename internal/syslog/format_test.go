package syslog

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// at is a fixed instant with nanoseconds: only 6 fractional digits may
// reach the wire (RFC 5424 §6.2.3, TIME-SECFRAC = "." 1*6DIGIT).
var at = time.Date(2026, 12, 6, 5, 4, 3, 123456789, time.UTC)

func record(level slog.Level, msg string, attrs ...slog.Attr) slog.Record {
	r := slog.NewRecord(at, level, msg, 0)
	r.AddAttrs(attrs...)
	return r
}

// proves: O3 (issue 14 item 1: valid RFC 5424 — a TIMESTAMP of 6
// fractional digits, the configured HOSTNAME, the mnemonic as MSGID, one
// line per message; RFC 3164 as syslog(3) writes it for /dev/log)
func TestGoldenLines(t *testing.T) {
	mn := slog.String("mnemonic", "GM_RECV_DELETE")
	cases := []struct {
		name string
		o    Options
		r    slog.Record
		want string
	}{
		{"rfc5424", Options{App: "isakmpd", Hostname: "ks1", PID: 4242},
			record(slog.LevelInfo, "%GDOI-5-KS_REGS_COMPLETE: KS completed successful registration in group G with GM 10.0.0.2.", slog.String("mnemonic", "KS_REGS_COMPLETE")),
			"<189>1 2026-12-06T05:04:03.123456Z ks1 isakmpd 4242 KS_REGS_COMPLETE - %GDOI-5-KS_REGS_COMPLETE: KS completed successful registration in group G with GM 10.0.0.2.\n"},
		{"rfc5424 newline and attrs", Options{App: "isakmpd", Hostname: "gm1", PID: 7},
			record(slog.LevelWarn, "%GDOI-4-GM_RECV_DELETE: GM received delete-msg from KS in group G.\nTEKs lifetime are reduced", mn, slog.String("peer", "a\r\nb")),
			"<188>1 2026-12-06T05:04:03.123456Z gm1 isakmpd 7 GM_RECV_DELETE - %GDOI-4-GM_RECV_DELETE: GM received delete-msg from KS in group G. TEKs lifetime are reduced peer=a b\n"},
		{"rfc5424 plain record", Options{App: "tmd", Hostname: "host with space", PID: 1},
			record(slog.LevelError, "dataplane down", slog.String("err", "x")),
			"<187>1 2026-12-06T05:04:03.123456Z host_with_space tmd 1 - - dataplane down err=x\n"},
		{"rfc5424 facility local0", Options{App: "isakmpd", Hostname: "ks1", PID: 1, Facility: 16},
			record(slog.LevelInfo, "up"),
			"<134>1 2026-12-06T05:04:03.123456Z ks1 isakmpd 1 - - up\n"},
		{"rfc3164", Options{App: "isakmpd", Hostname: "ks1", PID: 4242, Format: RFC3164},
			record(slog.LevelInfo, "%GDOI-5-KS_REGS_COMPLETE: KS completed registration.\n", slog.String("mnemonic", "KS_REGS_COMPLETE")),
			"<189>Dec  6 05:04:03 isakmpd[4242]: %GDOI-5-KS_REGS_COMPLETE: KS completed registration.\n"},
	}
	for _, c := range cases {
		var b bytes.Buffer
		if err := NewHandler(&b, c.o).Handle(context.Background(), c.r); err != nil {
			t.Fatal(err)
		}
		if b.String() != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, b.String(), c.want)
		}
	}
}

// proves: O3 (issue 14 item 1: HOSTNAME follows the configured hostname
// in every copy of the handler, and a hostile attribute can neither split
// a message nor make it longer than MaxMessage)
func TestHostnameAndBound(t *testing.T) {
	var b bytes.Buffer
	h := NewHandler(&b, Options{App: "isakmpd", Hostname: "ks1", PID: 1})
	l := slog.New(h).With("group", "G")
	h.SetHostname("ks2")
	l.Info("x", "junk", strings.Repeat("é\n", 3000))
	line := b.String()
	if !strings.Contains(line, " ks2 isakmpd 1 - - x group=G junk=é é") {
		t.Fatalf("line %.120q", line)
	}
	if len(line) > MaxMessage || strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
		t.Fatalf("line of %d bytes, %d newlines", len(line), strings.Count(line, "\n"))
	}
	if got := strings.TrimSuffix(line, "\n"); !strings.HasSuffix(got, "é") && !strings.HasSuffix(got, " ") {
		t.Fatalf("cut inside a character: %q", got[len(got)-4:])
	}
}

// proves: O3 (issue 14 item 1: the local socket speaks RFC 3164, a remote
// server RFC 5424; a query chooses otherwise)
func TestDialFormat(t *testing.T) {
	dir := t.TempDir()
	for dest, want := range map[string]Format{
		"file://" + dir + "/a":                RFC5424,
		"file://" + dir + "/b?format=rfc3164": RFC3164,
		"udp://127.0.0.1:9":                   RFC5424,
		"udp://127.0.0.1:9?format=rfc3164":    RFC3164,
	} {
		d, err := Dial(dest)
		if err != nil {
			t.Fatal(err)
		}
		if d.Format() != want {
			t.Errorf("%s: %v, want %v", dest, d.Format(), want)
		}
		d.Close()
	}
	if _, err := Dial("udp://127.0.0.1:9?format=json"); err == nil {
		t.Fatal("format=json accepted")
	}
}
