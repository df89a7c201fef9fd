package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
)

// mcastRecorder is a KS socket that records the multicast options set on
// it and swallows multicast datagrams (nothing leaves loopback).
type mcastRecorder struct {
	PacketConn
	mu     sync.Mutex
	opts   []string
	sent   []netip.AddrPort
	refuse error // SetMulticastOptions fails with it
}

func (c *mcastRecorder) SetMulticastOptions(ifName string, ttl int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refuse != nil {
		return c.refuse
	}
	c.opts = append(c.opts, fmt.Sprintf("%s/%d", ifName, ttl))
	return nil
}

func (c *mcastRecorder) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	if to.Addr().IsMulticast() {
		c.mu.Lock()
		c.sent = append(c.sent, to)
		c.mu.Unlock()
		return len(b), nil
	}
	return c.PacketConn.WriteToUDPAddrPort(b, to)
}

// scheduledMulticastRekey starts a KS serving one multicast group through
// rec and moves its clock past the group's scheduled rekey; it returns
// once the rekey left.
func scheduledMulticastRekey(t *testing.T, rec *mcastRecorder) *Node {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	clk := &fakeClock{now: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}
	ksAddr := netip.MustParseAddr("127.0.0.8")
	grp := ksGroup(t, ksAddr)
	grp.TEKs = grp.TEKs[:1]
	grp.Rekey = ks.RekeyPolicy{Multicast: netip.MustParseAddrPort("239.192.1.1:848"), TTL: 5, Interface: "lo"}
	kn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{grp}, Now: clk.Now,
		ListenPacket: func(a netip.AddrPort) (PacketConn, error) {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
			if err != nil {
				return nil, err
			}
			rec.PacketConn = c
			return rec, nil
		}})
	var at time.Time
	kn.Do(ctx, func() { at = kn.ks.NextRekey("GETVPN") })
	if at.IsZero() {
		t.Fatal("no rekey scheduled")
	}
	clk.Add(at.Sub(clk.Now()) + time.Second)
	waitFor(t, "the scheduled multicast rekey", kn, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.sent) > 0
	})
	return kn
}

// A scheduled multicast rekey leaves with the group's configured
// interface and TTL, as before issue 15 (node.deliver set them for every
// rekey, scheduled or manual); since ks.Delivery schedules the rekeys,
// the node sets them when a delivery starts (apply, ks.RekeyStarted).
//
// proves: T1 (issue 15: a scheduled multicast rekey leaves with its group's interface and TTL)
func TestScheduledMulticastRekeySetsOptions(t *testing.T) {
	rec := &mcastRecorder{}
	scheduledMulticastRekey(t, rec)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.opts) == 0 || rec.opts[len(rec.opts)-1] != "lo/5" {
		t.Fatalf("the scheduled multicast rekey left (%v) without the group's interface and TTL (lo/5) being set: options set %v", rec.sent, rec.opts)
	}
}

// A scheduled multicast rekey whose socket refuses the group's interface
// and TTL has already started (its keys are saved): it leaves with the
// socket's defaults, counted and logged.
//
// proves: T1 (issue 15: a multicast rekey sent without its options is counted)
func TestScheduledMulticastRekeyOptionsRefusedCounted(t *testing.T) {
	rec := &mcastRecorder{refuse: errors.New("no such interface")}
	kn := scheduledMulticastRekey(t, rec)
	var v uint64
	kn.Do(context.Background(), func() {
		for _, c := range kn.KSCounters() {
			if c.Name == "multicast_rekeys_without_options" {
				v = c.Value
			}
		}
	})
	if v != 1 {
		t.Fatalf("multicast_rekeys_without_options = %d after one multicast rekey whose socket refused its options, want 1", v)
	}
}
