package dataplane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

// The raw link sends IPv4 packets as they are (the engine's outer header)
// and receives ESP with its IPv4 header, in batches and without
// allocating: in a namespace of its own, ESP sent to 127.0.0.1 comes back
// on the ESP socket.
func TestRawLinkBatchesWithoutAllocating(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireNetns(t)
	ns := testnet.NewNetns(t, "dplink")
	var l *RawLink
	ns.Do(t, func() error {
		var err error
		l, err = NewRawLink(0)
		return err
	})
	defer l.Close()
	pkts := make([][]byte, 4)
	for i := range pkts {
		p := make([]byte, 20+8+100)
		p[0], p[8], p[9] = 0x45, 64, 50
		binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
		copy(p[12:], []byte{127, 0, 0, 1})
		copy(p[16:], []byte{127, 0, 0, 1})
		binary.BigEndian.PutUint32(p[20:], 0x5eed0000+uint32(i)) // SPI
		pkts[i] = p
	}
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	sizes := make([]int, len(bufs))
	var seen []uint32
	round := func() {
		if f := l.Send(pkts); f != 0 {
			t.Fatalf("%d sends failed", f)
		}
		for got := 0; got < len(pkts); {
			n, err := l.Receive(bufs, sizes)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Fatal("nothing received within the timeout")
			}
			for i := range n {
				p := bufs[i][:sizes[i]]
				if len(p) != len(pkts[0]) || p[9] != 50 || !bytes.Equal(p[28:], pkts[0][28:]) {
					t.Fatalf("received %x", p)
				}
				if seen != nil {
					seen = append(seen, binary.BigEndian.Uint32(p[20:]))
				}
			}
			got += n
		}
	}
	seen = []uint32{}
	round()
	if len(seen) != 4 || seen[0] != 0x5eed0000 || seen[3] != 0x5eed0003 {
		t.Fatalf("SPIs received %x", seen)
	}
	seen = nil
	if !raceEnabled && testing.AllocsPerRun(50, round) != 0 {
		t.Errorf("send+receive allocate")
	}
	if d := l.Drops(); d != 0 {
		t.Errorf("drops %d", d)
	}
}

// Receive waits in the netpoller, not in the kernel: on an idle link it
// returns 0 within about recvTimeout (the engine's inbound loop checks for
// Close in between), and after Close it returns an error that is
// os.ErrClosed.
// proves: E1 (issue 12: the engine stops while no ESP arrives)
func TestRawLinkReceiveTimesOutAndCloses(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireNetns(t)
	ns := testnet.NewNetns(t, "dplinkto")
	var l *RawLink
	ns.Do(t, func() error {
		var err error
		l, err = NewRawLink(0)
		return err
	})
	bufs, sizes := [][]byte{make([]byte, 2048)}, []int{0}
	start := time.Now()
	n, err := l.Receive(bufs, sizes)
	if took := time.Since(start); n != 0 || err != nil || took < recvTimeout/2 || took > 10*recvTimeout {
		t.Fatalf("idle Receive: %d, %v after %v (timeout %v)", n, err, took, recvTimeout)
	}
	l.Close()
	if _, err := l.Receive(bufs, sizes); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Receive after Close: %v, want os.ErrClosed", err)
	}
}
