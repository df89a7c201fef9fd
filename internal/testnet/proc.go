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
	"strings"
	"sync"
	"testing"
	"time"
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

// Buffer collects a process's output safely for concurrent writes and
// reads, and lets a test wait for what is written (WaitFor) instead of
// polling it.
type Buffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	written chan struct{} // closed by the next Write; nil when nobody waits
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.written != nil {
		close(s.written)
		s.written = nil
	}
	return s.b.Write(p)
}

// WaitFor waits until the contents satisfy cond, woken by each Write; it
// reports false if they still do not after timeout.
func (s *Buffer) WaitFor(timeout time.Duration, cond func(string) bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		if cond(s.b.String()) {
			s.mu.Unlock()
			return true
		}
		if s.written == nil {
			s.written = make(chan struct{})
		}
		written := s.written
		s.mu.Unlock()
		select {
		case <-written:
		case <-deadline.C:
			return cond(s.String())
		}
	}
}

// WaitContains fails t unless the contents include want within timeout.
func (s *Buffer) WaitContains(t testing.TB, timeout time.Duration, want string) {
	t.Helper()
	if !s.WaitFor(timeout, func(b string) bool { return strings.Contains(b, want) }) {
		t.Fatalf("%q not written within %v:\n%s", want, timeout, s.String())
	}
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
