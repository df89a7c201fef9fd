package rundir

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
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

// proves: D1, O2 (a daemon's control and SA sockets are never wider
// than their mode, and binding them narrows no other file: the process's
// umask is not touched, which once made a test's 0644 file 0600 and hung
// CI, or, two binding at once, was left narrowed for good; with one P
// the second half catches the old code by chance only)
func TestListenModeWithoutTheUmask(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	// bind alone, before Listen's chmod: the file is mode already.
	l, err := listenConfig(0o600).Listen(context.Background(), "unix", filepath.Join(dir, "bound.sock"))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "bound.sock"))
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket file as bind created it: %v; want 0600", fi.Mode())
	}
	// Files created while sockets are bound keep their mode.
	stop := make(chan struct{})
	bad := make(chan string, 1)
	done := make(chan struct{})
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}()
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			p := filepath.Join(dir, fmt.Sprintf("f%d", i%64))
			os.Remove(p)
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				continue
			}
			st, _ := f.Stat()
			f.Close()
			if st != nil && st.Mode().Perm() != 0o644 {
				select {
				case bad <- fmt.Sprintf("%s created %v while a socket was bound", p, st.Mode().Perm()):
				default:
				}
				return
			}
		}
	}()
	// Two binding goroutines: with the umask narrowed and restored by
	// each, one restoring the other's narrowed value left it narrowed for
	// good.
	errs := make(chan error, 2)
	for g := range 2 {
		go func() {
			for range 1000 {
				ln, err := Listen("unix", filepath.Join(dir, fmt.Sprintf("d%d.sock", g)), 0o600)
				if err != nil {
					errs <- err
					return
				}
				ln.Close()
			}
			errs <- nil
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	<-done
	select {
	case s := <-bad:
		t.Fatal(s)
	default:
	}
	if now := syscall.Umask(0); now != 0 {
		t.Fatalf("the umask is %04o after the binds, not 0", now)
	}
}
