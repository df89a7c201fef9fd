package ks

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/pcap"
	"github.com/groupvpn/groupvpn/internal/testnet"
	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: E1 (issue 18 F4, wire) — tshark decodes, without a malformation
// or expert error, a GROUPKEY-PULL message 4 (in the clear, as the isakmp
// golden messages are) whose SID key packet comes from a group past 65,535
// members: NUMBER_OF_SID_BITS wider than 16 and an ID above 0xffff.
func TestTsharkDecodesWideSIDPull(t *testing.T) {
	testnet.RequireTools(t, "tshark") // fails under CI=true: make test installs it
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ten := netip.MustParsePrefix("10.0.0.0/8")
	s := New(Options{})
	if err := s.AddGroup(GroupConfig{Name: "W", ID: 12, Address: netip.MustParseAddr("192.0.2.1"), SigningKey: key,
		TEKs: []TEKPolicy{{Transform: isakmp.ESPAESGCM16, KeyBits: 128, Lifetime: time.Hour, Selectors: []Selector{{Src: ten, Dst: ten}}}}}, now); err != nil {
		t.Fatal(err)
	}
	clock := now
	var kd *isakmp.KD
	for i := 0; s.SIDBits("W") == MinSIDBits || len(sidsOf(t, kd)) == 0 || sidsOf(t, kd)[0].id <= 0xffff; i++ {
		clock = clock.Add(time.Millisecond)
		if !s.NextRekey("W").After(clock) {
			if _, err := s.Rekey("W", clock); err != nil {
				t.Fatal(err)
			}
		}
		a := memberAddr(i)
		if _, kd, err = s.Keys(Peer{Addr: netip.AddrPortFrom(a, 848)}, isakmp.GroupID(12), 1, clock); err != nil {
			t.Fatal(err)
		}
	}
	sid := sidsOf(t, kd)[0]
	msg := &isakmp.Message{Header: isakmp.Header{InitiatorCookie: isakmp.Cookie{1, 2, 3, 4, 5, 6, 7, 8}, ResponderCookie: isakmp.Cookie{8, 7, 6, 5, 4, 3, 2, 1},
		Exchange: isakmp.ExchangePull, MessageID: 0x0a0b0c0d},
		Payloads: []isakmp.Payload{&isakmp.Hash{Data: bytes.Repeat([]byte{0x48}, 32)}, &isakmp.SEQ{Number: 1}, kd}}
	b, err := msg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "pull4.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pcap.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteUDP(time.Unix(1700000000, 0), netip.MustParseAddrPort("192.0.2.1:848"), netip.MustParseAddrPort("10.0.0.1:848"), b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tshark, "-n", "-r", path, "-d", "udp.port==848,isakmp", "-V")
	cmd.Env = append(os.Environ(), "HOME="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.String())
	}
	text := string(out)
	for _, want := range []string{"Type: SID (4)", fmt.Sprintf("Value: %08x", sid.id)} {
		if !strings.Contains(text, want) {
			t.Errorf("tshark output lacks %q", want)
		}
	}
	if strings.Contains(text, "Malformed") || strings.Contains(text, "Expert Info") {
		t.Errorf("tshark reports a malformation or expert error")
	}
	if t.Failed() {
		t.Logf("%d-bit sender ID %#x; tshark:\n%s", sid.bits, sid.id, text)
	}
}
