package iked

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func sampleFrames() []Frame {
	v4 := netip.MustParseAddrPort("192.0.2.1:848")
	v6 := netip.MustParseAddrPort("[2001:db8::1]:4500")
	return []Frame{
		{Type: FrameHello, API: APIVersion, IKEVersion: 1, Name: "isakmpd"},
		{Type: FrameWelcome, OK: true, Addrs: []netip.AddrPort{v4, v6}},
		{Type: FrameWelcome, OK: false, Message: "IKE version 1 is already served by isakmpd (pid 42)"},
		{Type: FrameDatagram, Local: v4, Remote: v6, Payload: []byte("0123456789012345678901234567")},
		{Type: FrameAddrsRequest, ID: 7},
		{Type: FrameAddrsAnswer, ID: 7, Addrs: []netip.AddrPort{v6}},
		{Type: FrameSetMulticast, ID: 8, Local: v4, IfName: "eth0", TTL: 16},
		{Type: FrameResult, ID: 8, OK: false, Message: "no such interface"},
		{Type: FrameResult, ID: 9, OK: true},
		{Type: FrameStatsRequest, ID: 10},
		{Type: FrameStatsAnswer, ID: 10, Counters: Stats{Received: 3, Short: 1, Stalled: 1 << 40}.frameCounters()},
	}
}

// proves: D1 (the broker protocol carries every frame intact)
func TestFrameRoundTrip(t *testing.T) {
	for _, f := range sampleFrames() {
		b, err := AppendFrame(nil, &f)
		if err != nil {
			t.Fatalf("append %+v: %v", f, err)
		}
		g, err := ParseFrame(b)
		if err != nil {
			t.Fatalf("parse %x: %v", b, err)
		}
		if len(g.Payload) == 0 {
			g.Payload = f.Payload
		}
		if !reflect.DeepEqual(f, g) {
			t.Errorf("round trip:\n got %+v\nwant %+v", g, f)
		}
	}
}

// proves: D1 (malformed frames are refused, never accepted or panicking)
func TestFrameMalformed(t *testing.T) {
	good, _ := AppendFrame(nil, &Frame{Type: FrameAddrsAnswer, ID: 1, Addrs: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:848")}})
	cases := map[string][]byte{
		"empty":             {},
		"unknown type":      {99},
		"truncated":         good[:len(good)-1],
		"trailing":          append(append([]byte(nil), good...), 0),
		"bad addr len":      {byte(FrameDatagram), 5, 1, 2, 3, 4, 5, 0, 1},
		"hello no name":     {byte(FrameHello), 1, 1, 0},
		"bad bool":          {byte(FrameResult), 0, 0, 0, 1, 2, 0, 0},
		"huge count":        {byte(FrameAddrsAnswer), 0, 0, 0, 1, 0xff, 0xff},
		"stats: bad name":   append([]byte{byte(FrameStatsAnswer), 0, 0, 0, 1, 1, 3, 'B', 'a', 'd'}, make([]byte, 8)...),
		"stats: empty name": append([]byte{byte(FrameStatsAnswer), 0, 0, 0, 1, 1, 0}, make([]byte, 8)...),
		"stats: too many":   append([]byte{byte(FrameStatsAnswer), 0, 0, 0, 1, MaxCounters + 1}, make([]byte, 10*(MaxCounters+1))...),
		"stats: truncated":  {byte(FrameStatsAnswer), 0, 0, 0, 1, 2, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0},
		"message too long": append([]byte{byte(FrameResult), 0, 0, 0, 1, 0, 0xff, 0xff},
			bytes.Repeat([]byte{'x'}, 0xffff)...),
	}
	for name, b := range cases {
		if _, err := ParseFrame(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	if _, err := AppendFrame(nil, &Frame{Type: FrameHello, Name: strings.Repeat("n", MaxName+1)}); err == nil {
		t.Error("AppendFrame accepted a name past MaxName")
	}
	if _, err := AppendFrame(nil, &Frame{Type: FrameDatagram, Payload: []byte{1}}); err == nil {
		t.Error("AppendFrame accepted a datagram without addresses")
	}
}

func FuzzParseFrame(f *testing.F) {
	for _, fr := range sampleFrames() {
		b, _ := AppendFrame(nil, &fr)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseFrame(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not wrapping ErrMalformed: %v", err)
			}
			return
		}
		// What parses re-encodes to the same octets.
		out, err := AppendFrame(nil, &fr)
		if err != nil {
			t.Fatalf("parsed frame does not re-encode: %v (%+v)", err, fr)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", out, b)
		}
	})
}
