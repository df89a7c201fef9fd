package isakmp

import (
	"net/netip"
	"os"
	"testing"
)

// testCertDER is a self-signed ECDSA P-256 certificate kept in testdata so
// that golden messages are byte-stable.
func testCertDER(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/cert.der")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
