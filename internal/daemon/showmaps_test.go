package daemon

import (
	"testing"

	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/show"
)

const mapsGM = `hostname gm1
crypto isakmp policy 10
 encryption aes 128
 hash sha256
 authentication pre-share
 group 19
crypto isakmp key secret address 127.0.3.1
crypto gdoi group CRASH
 identity number 4242
 server address ipv4 127.0.3.1
crypto map M 10 gdoi
 set group CRASH
interface lo
 crypto map M
end
`

// proves: O2 (issue 14 item 4: `show crypto ipsec sa` takes its crypto
// map tag and interface from the configuration: the map carrying the
// group and the interface that map is applied to).
func TestCryptoMapsFromConfig(t *testing.T) {
	c, err := policy.Parse("gm.conf", []byte(mapsGM))
	if err != nil {
		t.Fatal(err)
	}
	got := cryptoMaps(c)
	if want := (show.CryptoMapRef{Map: "M", Interface: "lo"}); got["CRASH"] != want || len(got) != 1 {
		t.Fatalf("cryptoMaps = %+v, want CRASH: %+v", got, want)
	}
	if len(cryptoMaps(nil)) != 0 {
		t.Fatal("cryptoMaps(nil) is not empty")
	}
}
