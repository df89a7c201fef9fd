package daemon_test

import (
	"os"
	"testing"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testnet.RemoveBinary()
	os.Exit(code)
}
