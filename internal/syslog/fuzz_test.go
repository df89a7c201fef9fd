package syslog

import (
	"context"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

var (
	header5424 = regexp.MustCompile(`^<\d{1,3}>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z [!-~]{1,255} [!-~]{1,48} \d+ [!-~]{1,32} - `)
	header3164 = regexp.MustCompile(`^<\d{1,3}>[A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d [!-~]{1,32}\[\d+\]: `)
)

// FuzzLine: whatever a message, an attribute, a mnemonic or a hostname
// hold (they may come from the network: a peer's ID, a group name), the
// line is one line, at most MaxMessage bytes, valid UTF-8, with a header a
// receiver parses.
func FuzzLine(f *testing.F) {
	f.Add("%GDOI-4-GM_RECV_DELETE: GM received delete-msg from KS in group G.\nTEKs lifetime are reduced", "GM_RECV_DELETE", "peer", "10.0.0.1", "ks1", false)
	f.Add("%GDOI-5-KS_REGS_COMPLETE: done", "KS_REGS_COMPLETE", "group", "G", "host name", true)
	f.Add("x\r\n\x00\x7f\xff", "bad mnemonic\n", "k\n", "v\r", "", false)
	f.Add(strings.Repeat("é", 3000), strings.Repeat("M", 64), "k", strings.Repeat("\n", 10), strings.Repeat("h", 300), true)
	f.Fuzz(func(t *testing.T, msg, mnemonic, k, v, host string, legacy bool) {
		var b strings.Builder
		o := Options{App: "isakmpd", Hostname: host, PID: 1}
		if legacy {
			o.Format = RFC3164
		}
		h := NewHandler(&b, o)
		r := slog.NewRecord(at, slog.LevelInfo, msg, 0)
		r.AddAttrs(slog.String("mnemonic", mnemonic), slog.String(k, v))
		if err := h.Handle(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		line := b.String()
		if len(line) > MaxMessage || strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") || strings.ContainsRune(line, '\r') {
			t.Fatalf("not one bounded line (%d bytes): %q", len(line), line)
		}
		if !utf8.ValidString(line) {
			t.Fatalf("invalid UTF-8: %q", line)
		}
		re := header5424
		if legacy {
			re = header3164
		}
		if !re.MatchString(line) {
			t.Fatalf("header: %q", line)
		}
	})
}
