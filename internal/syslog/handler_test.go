package syslog

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// proves: O3 — %GDOI mnemonics reach a real syslog socket as RFC 5424
// messages with the IOS severity and the mnemonic as MSGID.
func TestRFC5424OverUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	w, err := Dial("udp://" + pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	l := slog.New(NewHandler(w, Options{App: "isakmpd", Hostname: "ks1"}))
	text := Log(l, Notice, "KS_REGS_COMPLETE", "KS completed successful registration in group %s with GM %s.", "G", "10.0.0.2")
	if text != "%GDOI-5-KS_REGS_COMPLETE: KS completed successful registration in group G with GM 10.0.0.2." {
		t.Fatalf("text %q", text)
	}
	buf := make([]byte, 2048)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	got := string(buf[:n])
	re := regexp.MustCompile(`^<189>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z ks1 isakmpd \d+ KS_REGS_COMPLETE - %GDOI-5-KS_REGS_COMPLETE: KS completed successful registration in group G with GM 10.0.0.2.\n$`)
	if !re.MatchString(got) {
		t.Fatalf("syslog message %q", got)
	}
	if _, err := Dial("ftp://x"); err == nil || !strings.Contains(err.Error(), "scheme") {
		t.Fatalf("bad scheme accepted: %v", err)
	}
}

// proves: D4 (logging reopened) — after the log file is rotated away,
// Reopen writes to a new file at the configured path; when reopening
// fails, the old destination stays in use.
func TestDestinationReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "isakmpd.log")
	d, err := Dial("file://" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	l := slog.New(NewHandler(d, Options{App: "isakmpd"}))
	l.Info("before rotation")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := d.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Info("after rotation")
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), "before rotation") || strings.Contains(string(old), "after rotation") ||
		!strings.Contains(string(cur), "after rotation") {
		t.Fatalf("rotated file:\n%s\nnew file:\n%s", old, cur)
	}

	// A destination that cannot be opened any more: the old one stays.
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	d2, err := Dial("file://" + filepath.Join(sub, "x.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	os.Rename(filepath.Join(sub, "x.log"), filepath.Join(dir, "x.log"))
	os.Remove(sub)
	if err := d2.Reopen(); err == nil {
		t.Fatal("reopening into a removed directory succeeded")
	}
	if _, err := d2.Write([]byte("still here\n")); err != nil {
		t.Fatalf("the old destination is unusable after a failed reopen: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "x.log")); !strings.Contains(string(b), "still here") {
		t.Fatalf("write after a failed reopen went nowhere: %q", b)
	}
}

// proves: O3 (issue 14 item 1: a local syslog daemon that stops reading
// /dev/log costs messages, not a stuck daemon: each write gives up after
// WriteTimeout)
func TestStalledSocketDoesNotBlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close() // never read
	d, err := Dial("unix://" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	l := slog.New(NewHandler(d, Options{App: "isakmpd", Format: d.Format()}))
	start := time.Now()
	line := strings.Repeat("x", 1000)
	for i := 0; ; i++ {
		r := slog.NewRecord(time.Now(), slog.LevelInfo, line, 0)
		err := l.Handler().Handle(context.Background(), r)
		if err != nil {
			if el := time.Since(start); el > 10*time.Second {
				t.Fatalf("the first failed write came after %v", el)
			}
			t0 := time.Now()
			l.Handler().Handle(context.Background(), r)
			if el := time.Since(t0); el > 2*WriteTimeout+time.Second {
				t.Fatalf("a write to a full socket took %v", el)
			}
			return
		}
		if i > 100000 {
			t.Fatal("the receiver's queue never filled")
		}
	}
}

// appender adds an attribute to its copy of each record and keeps it,
// as a handler may (it is its copy).
type appender struct {
	slog.Handler
	v    string
	kept []slog.Record
}

func (a *appender) Enabled(context.Context, slog.Level) bool { return true }

func (a *appender) Handle(_ context.Context, r slog.Record) error {
	r.AddAttrs(slog.String("by", a.v))
	a.kept = append(a.kept, r)
	return nil
}

// proves: Fanout clones a record once for all its handlers, and still no
// handler sees an attribute another added, with the record's attributes
// past its inline ones (an array with room to append).
func TestFanoutHandlersKeepOwnRecords(t *testing.T) {
	a, b := &appender{v: "a"}, &appender{v: "b"}
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "m", 0)
	for i := range 8 { // 5 inline, 3 in an array of 4
		r.AddAttrs(slog.Int("i", i))
	}
	if err := (Fanout{a, b}).Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*appender{a, b} {
		var last slog.Attr
		n := 0
		h.kept[0].Attrs(func(x slog.Attr) bool { last, n = x, n+1; return true })
		if n != 9 || last.Value.String() != h.v {
			t.Errorf("handler %s kept %d attributes, the last %v", h.v, n, last)
		}
	}
	n := 0
	r.Attrs(func(slog.Attr) bool { n++; return true })
	if n != 8 {
		t.Errorf("the caller's record has %d attributes", n)
	}
}
