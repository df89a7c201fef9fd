package bench

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/iked"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/tmd"
	"github.com/groupvpn/groupvpn/isakmp"
)

// Daemons is what running as separate processes costs (SPEC D1, DESIGN
// §1): a datagram's round trip when iked owns the socket and hands it to
// the protocol daemon over its unix socket, against the same round trip on
// a socket of the daemon's own; and installing then deleting a TEK in tmd
// over its API, against doing it in the daemon's own memory. The two
// sides of each comparison run in this process, so only the hop differs.
func Daemons() Scenario {
	ownInstall := Case{Name: "install+delete TEK in process (sadb.Memory)", Run: func(b *testing.B) {
		m := sadb.NewMemory()
		t := benchTEK()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			m.InstallTEK(t)
			m.DeleteTEK(t.Group, t.SPI)
		}
	}}
	return Scenario{
		Name:  "daemons",
		About: "the hops of the group ike: UDP through iked, SAs into tmd",
		Ceiling: Case{Name: "UDP round trip, own socket (300 B)", Octets: 300, Run: func(b *testing.B) {
			echo, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			defer echo.Close()
			go echoLoop(func(p []byte) (int, netip.AddrPort, error) { return echo.ReadFromUDPAddrPort(p) },
				func(p []byte, to netip.AddrPort) (int, error) { return echo.WriteToUDPAddrPort(p, to) })
			roundTrips(b, echo.LocalAddr().(*net.UDPAddr).AddrPort())
		}},
		Cases: []Case{
			{Name: "UDP round trip through iked (300 B)", Octets: 300, Run: func(b *testing.B) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				dir := tempDir(b)
				local := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freeUDPPort(b))
				srv := iked.New(iked.Options{Ports: []uint16{local.Port()},
					Inventory: func() ([]netip.AddrPort, error) { return []netip.AddrPort{local}, nil }})
				path := filepath.Join(dir, "iked.sock")
				if err := srv.Start(path); err != nil {
					b.Fatal(err)
				}
				go srv.Run(ctx)
				c, err := iked.Dial(ctx, path, "bench", 1)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				conn, err := c.Listen(local)
				if err != nil {
					b.Fatal(err)
				}
				go echoLoop(conn.ReadFromUDPAddrPort, conn.WriteToUDPAddrPort)
				roundTrips(b, local)
			}},
			{Name: "install+delete TEK in tmd (unix socket API)", Ceiling: &ownInstall, Run: func(b *testing.B) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				path := filepath.Join(tempDir(b), "tmd.sock")
				ready := make(chan struct{})
				srv := tmd.NewServer(tmd.Options{Ready: func() { close(ready) }})
				go srv.Serve(ctx, path)
				select {
				case <-ready:
				case <-time.After(5 * time.Second):
					b.Fatal("tmd did not start")
				}
				c, err := tmd.Dial(ctx, path, "bench", nil)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				t := benchTEK()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := c.InstallTEK(t); err != nil {
						b.Fatal(err)
					}
					if err := c.DeleteTEK(t.Group, t.SPI); err != nil {
						b.Fatal(err)
					}
				}
			}},
		},
	}
}

// benchTEK is a TEK as a GM installs it: AES-256-GCM, one selector pair.
func benchTEK() sadb.TEK {
	now := time.Now()
	return sadb.TEK{Group: "BENCH", GroupID: 1, SPI: 0x1000, Protocol: isakmp.TEKProtoESP,
		Transform: uint8(isakmp.ESPAESGCM16), KeyBits: 256, EncKey: make([]byte, 36),
		Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8"),
		Installed: now, Expires: now.Add(time.Hour), Lifetime: time.Hour, Configured: time.Hour, SendFrom: now}
}

// echoLoop sends every datagram back where it came from until reads fail.
func echoLoop(read func([]byte) (int, netip.AddrPort, error), write func([]byte, netip.AddrPort) (int, error)) {
	buf := make([]byte, 65536)
	for {
		n, from, err := read(buf)
		if err != nil {
			return
		}
		write(buf[:n], from)
	}
}

// roundTrips sends b.N IKEv1-header datagrams of 300 octets to to and waits
// for each echo.
func roundTrips(b *testing.B, to netip.AddrPort) {
	conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	msg := make([]byte, 300)
	msg[17] = 0x10 // IKE major version 1: iked hands it to isakmpd
	buf := make([]byte, 2048)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := conn.Write(msg); err != nil {
			b.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func freeUDPPort(b *testing.B) uint16 {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

func tempDir(b *testing.B) string {
	dir, err := os.MkdirTemp("", "gvbench-") // short: unix socket paths are limited
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
