package mcast_test
import ("testing";"net";"net/netip";"github.com/groupvpn/groupvpn/internal/mcast")
func TestX(t *testing.T){
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err!=nil{t.Fatal(err)}
	port := uint16(uc.LocalAddr().(*net.UDPAddr).Port)
	g:=netip.MustParseAddr("239.192.7.1")
	r1, err := mcast.Listen(netip.AddrPortFrom(g, port), "")
	t.Log(r1, err)
	r2, err := mcast.Listen(netip.AddrPortFrom(g, port), "")
	t.Log(r2, err)
	uc2, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: int(port)})
	t.Log(uc2, err)
}
