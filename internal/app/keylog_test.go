package app

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/testnet"
	"github.com/groupvpn/groupvpn/internal/tmd"
	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: E1 (issue 12: the TEK read from tmd) — tmd -keylog FILE creates
// FILE mode 0600, appends to what is there, writes each TEK installed in
// Wireshark's ESP SA table format and warns in its log; a FILE group or
// others may read, or a symbolic link, stops tmd's start.
func TestTmdKeyLog(t *testing.T) {
	dir := t.TempDir()
	socket, kl := filepath.Join(dir, "tmd.sock"), filepath.Join(dir, "keys")
	if err := os.WriteFile(kl, []byte("# kept\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out testnet.Buffer
	sigs := make(chan os.Signal, 1)
	exit := make(chan int, 1)
	n, next := notifyPipe(t)
	go func() {
		exit <- serveTmd(&Env{Stdout: &out, Stderr: &out}, []string{"-socket", socket, "-keylog", kl}, sigs, n)
		n.Close()
	}()
	waitReady(t, next, &out)
	c, err := tmd.Dial(context.Background(), socket, "isakmpd", nil)
	if err != nil {
		t.Fatal(err)
	}
	tek := sadb.TEK{Group: "GET", SPI: 0xabcdef01, Protocol: isakmp.TEKProtoESP, Transform: uint8(isakmp.ESPAESGCM16),
		KeyBits: 128, EncKey: []byte("0123456789abcdefSALT"), Expires: time.Now().Add(time.Hour)}
	if err := c.InstallTEK(tek); err != nil {
		t.Fatal(err)
	}
	c.Close()
	sigs <- syscall.SIGTERM
	if code := <-exit; code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	b, _ := os.ReadFile(kl)
	want := `"IPv4","*","*","0xabcdef01","AES-GCM with 16 octet ICV [RFC4106]","0x3031323334353637383961626364656653414c54","NULL",""`
	if !strings.HasPrefix(string(b), "# kept\n") || !strings.Contains(string(b), want) {
		t.Errorf("key log:\n%s\nwant the old content then %s", b, want)
	}
	if !strings.Contains(out.String(), "whoever reads it decrypts the group's traffic") {
		t.Errorf("no warning in tmd's log:\n%s", out.String())
	}

	fresh := filepath.Join(dir, "fresh")
	loose := filepath.Join(dir, "loose")
	// Its mode set, not left to the umask (rundir.Listen once narrowed the
	// process's umask while it bound, and two binds at once left it so).
	if err := os.WriteFile(loose, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	os.Symlink(fresh, link)
	f, err := openKeyLog(fresh)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if st, _ := os.Stat(fresh); st.Mode().Perm() != 0o600 {
		t.Errorf("a new key log has mode %04o, want 0600", st.Mode().Perm())
	}
	for path, msg := range map[string]string{loose: "mode 0644 lets group or others read the keys", link: "-keylog: open " + link} {
		code, out := tmdFails(t, "-socket", socket, "-keylog", path)
		if code != 1 || !strings.Contains(out, msg) {
			t.Errorf("tmd -keylog %s: exit %d, %q; want 1 and %q", path, code, out, msg)
		}
	}
}
