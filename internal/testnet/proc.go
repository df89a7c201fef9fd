package testnet

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

// Binary builds cmd/groupvpn once per test binary, for tests that run the
// daemons as processes of their own. Call RemoveBinary from TestMain.
func Binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		_, here, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(here), "..", "..")
		binDir, binErr = os.MkdirTemp("", "groupvpn-test-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "groupvpn")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/groupvpn")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr, binPath = err, string(out)
		}
	})
	if binErr != nil {
		t.Fatalf("build groupvpn: %v\n%s", binErr, binPath)
	}
	return binPath
}

// RemoveBinary deletes what Binary built.
func RemoveBinary() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// Buffer collects a process's output safely for concurrent writes and reads.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WriteECKey writes a new P-256 private key (PKCS #8 PEM) to path: a KS's
// rekey signing key (`crypto key import ec NAME file PATH`).
func WriteECKey(t testing.TB, path string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
