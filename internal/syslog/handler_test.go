package syslog

import (
	"log/slog"
	"net"
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
	l := slog.New(NewHandler(w, "isakmpd", nil))
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
	re := regexp.MustCompile(`^<189>1 \d{4}-\d\d-\d\dT[0-9:.]+Z \S+ isakmpd \d+ KS_REGS_COMPLETE - %GDOI-5-KS_REGS_COMPLETE: KS completed successful registration in group G with GM 10.0.0.2.\n$`)
	if !re.MatchString(got) {
		t.Fatalf("syslog message %q", got)
	}
	if _, err := Dial("ftp://x"); err == nil || !strings.Contains(err.Error(), "scheme") {
		t.Fatalf("bad scheme accepted: %v", err)
	}
}
