package rundir

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// proves: D1 (a daemon refuses to start twice, and recovers the socket of
// one that died)
func TestListen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "d.sock")
	for _, network := range []string{"unix", "unixpacket"} {
		ln, err := Listen(network, path, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, %v", network, fi.Mode(), err)
		}
		if _, err := Listen(network, path, 0o600); !errors.Is(err, ErrInUse) {
			t.Fatalf("%s: second listener: %v, want ErrInUse", network, err)
		}
		// A daemon that died leaves its socket file behind.
		ln.SetUnlinkOnClose(false)
		ln.Close()
		if _, err := os.Lstat(path); err != nil {
			t.Fatal(err)
		}
		ln, err = Listen(network, path, 0)
		if err != nil {
			t.Fatalf("%s: stale socket not replaced: %v", network, err)
		}
		ln.Close()
	}
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("keep me"), 0o600)
	if _, err := Listen("unix", plain, 0o600); !errors.Is(err, ErrNotSocket) {
		t.Fatalf("a plain file: %v, want ErrNotSocket", err)
	}
	if b, _ := os.ReadFile(plain); string(b) != "keep me" {
		t.Fatal("the plain file was touched")
	}
}
