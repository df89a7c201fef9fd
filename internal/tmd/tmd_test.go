package tmd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/testnet"
	"github.com/groupvpn/groupvpn/isakmp"
)

// logBuf is a concurrency-safe log sink.
type logBuf struct{ testnet.Buffer }

func (l *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// running is a server serving in the background.
type running struct {
	srv  *Server
	stop func() error
}

// start serves a new server on path and waits until it listens.
func start(t *testing.T, path string, logger *slog.Logger) *running {
	t.Helper()
	return startWith(t, path, Options{Logger: logger})
}

// startWith is start with options (Ready is set here).
func startWith(t *testing.T, path string, o Options) *running {
	t.Helper()
	ready := make(chan struct{})
	o.Ready = func() { close(ready) }
	srv := NewServer(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, path) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("Serve: %v", err)
	case <-time.After(5 * time.Second):
		cancel()
		t.Fatal("tmd did not become ready")
	}
	var once sync.Once
	var serr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case serr = <-done:
			case <-time.After(5 * time.Second):
				serr = errors.New("Serve did not return")
			}
		})
		return serr
	}
	t.Cleanup(func() { stop() })
	return &running{srv: srv, stop: stop}
}

func sockPath(t *testing.T) string { return filepath.Join(t.TempDir(), "tmd.sock") }

func dial(t *testing.T, path, name string) *Client {
	t.Helper()
	c, err := Dial(context.Background(), path, name, nil)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// fullTEK sets every field of a TEK.
func fullTEK(group string, spi uint32) sadb.TEK {
	return sadb.TEK{
		Group:        group,
		GroupID:      1234,
		SPI:          spi,
		Protocol:     isakmp.TEKProtocol(1),
		Transform:    20,
		KeyBits:      256,
		AuthAlg:      12,
		EncKey:       []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
		AuthKey:      []byte{0xaa, 0xbb},
		Src:          netip.MustParsePrefix("10.1.0.0/16"),
		Dst:          netip.MustParsePrefix("2001:db8::/32"),
		IPProto:      17,
		SrcPort:      500,
		DstPort:      4500,
		SenderIDs:    []uint32{1, 2, 300000},
		SIDBits:      8,
		Installed:    t0,
		Expires:      t0.Add(time.Hour),
		Lifetime:     59 * time.Minute,
		Configured:   time.Hour,
		SendFrom:     t0.Add(30 * time.Second),
		Deactivate:   t0.Add(45 * time.Minute),
		ReceiveOnly:  true,
		ReplayMethod: isakmp.ReplayCounter,
		ReplayWindow: 64,
		Pseudotime:   3 * time.Second,
		PseudotimeAt: t0.Add(time.Millisecond),
	}
}

func fullKEK(group string) sadb.KEK {
	k := sadb.KEK{
		Group:     group,
		GroupID:   1234,
		Alg:       isakmp.KEKAlg(3),
		KeyBits:   256,
		Key:       []byte("iv-and-key-material"),
		SigAlg:    isakmp.SigAlg(1),
		SigKey:    []byte{0x30, 0x82, 0x01},
		Ack:       true,
		Multicast: netip.MustParseAddrPort("239.1.1.1:848"),
		Installed: t0,
		Expires:   t0.Add(24 * time.Hour),
	}
	for i := range k.SPI {
		k.SPI[i] = byte(i + 1)
	}
	return k
}

// proves: D1 (the SA API carries TEKs and KEKs without loss)
func TestTEKKEKJSONRoundTrip(t *testing.T) {
	// Every field must be set, or the test proves nothing about it.
	for _, v := range []any{fullTEK("g", 7), fullKEK("g")} {
		rv := reflect.ValueOf(v)
		for i := range rv.NumField() {
			if rv.Field(i).IsZero() {
				t.Fatalf("%T.%s is zero in the sample", v, rv.Type().Field(i).Name)
			}
		}
	}
	in := Request{Op: OpInstallTEK, TEK: new(fullTEK("g", 0x01020304))}
	k := fullKEK("g")
	b, err := json.Marshal([]Request{in, {Op: OpInstallKEK, KEK: &k}})
	if err != nil {
		t.Fatal(err)
	}
	var out []Request
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*out[0].TEK, *in.TEK) {
		t.Errorf("TEK changed on the wire:\n got %+v\nwant %+v", *out[0].TEK, *in.TEK)
	}
	if !reflect.DeepEqual(*out[1].KEK, k) {
		t.Errorf("KEK changed on the wire:\n got %+v\nwant %+v", *out[1].KEK, k)
	}
	// Zero prefixes and addresses (no selector, unicast rekey) survive too.
	z := sadb.TEK{Group: "z", SPI: 1}
	b, _ = json.Marshal(z)
	var z2 sadb.TEK
	if err := json.Unmarshal(b, &z2); err != nil || !reflect.DeepEqual(z, z2) {
		t.Errorf("zero TEK: %v, %+v", err, z2)
	}
}

// proves: D1 (SAs survive a client restart: isakmpd restarts, tmd keeps them)
func TestSAsSurviveClientRestart(t *testing.T) {
	path := sockPath(t)
	var logs logBuf
	start(t, path, logs.logger())
	c := dial(t, path, "isakmpd")
	tek, kek := fullTEK("g1", 0x1000), fullKEK("g1")
	tek.Expires, tek.Deactivate = time.Now().Add(time.Hour), time.Time{}
	kek.Expires = time.Now().Add(time.Hour)
	if err := c.InstallTEK(tek); err != nil {
		t.Fatal(err)
	}
	if err := c.InstallKEK(kek); err != nil {
		t.Fatal(err)
	}
	c.SetFailMode("g1", sadb.FailClose)
	c.Close()

	c2 := dial(t, path, "isakmpd")
	teks := c2.mirrorTEKs()
	if len(teks) != 1 || !teks[0].Expires.Equal(tek.Expires) || teks[0].SPI != 0x1000 || !reflect.DeepEqual(teks[0].SenderIDs, tek.SenderIDs) {
		t.Fatalf("mirror after restart: %+v", teks)
	}
	if got := c2.TEKs(); len(got) != 1 || got[0].Src != tek.Src || got[0].Dst != tek.Dst {
		t.Fatalf("TEKs after restart: %+v", got)
	}
	if got := c2.KEKs(); len(got) != 1 || got[0].SPI != kek.SPI {
		t.Fatalf("KEKs after restart: %+v", got)
	}
	if got := c2.FailMode("g1"); got != sadb.FailClose {
		t.Fatalf("fail mode after restart: %v", got)
	}
	if got := c2.mirror.FailMode("g1"); got != sadb.FailClose {
		t.Fatalf("mirror fail mode after restart: %v", got)
	}
	// tmd notices the first client's close on its own time: wait for its
	// log line, written once the client is gone.
	logs.WaitContains(t, 5*time.Second, `msg="tmd client disconnected" client=isakmpd`)
	st, err := c2.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.TEKs != 1 || st.KEKs != 1 || st.API != APIVersion || st.PID != os.Getpid() || len(st.Clients) != 1 || st.Clients[0].Name != "isakmpd" {
		t.Fatalf("status: %+v", st)
	}
}

func (c *Client) mirrorTEKs() []sadb.TEK {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mirror.TEKs()
}

// proves: D1 (lifetimes expire in tmd, with no client connected)
func TestExpiryWithoutClient(t *testing.T) {
	path := sockPath(t)
	var logs logBuf
	r := start(t, path, logs.logger())
	c := dial(t, path, "isakmpd")
	now := time.Now()
	short := fullTEK("g", 0xdeadbeef)
	short.Expires, short.Deactivate = now.Add(300*time.Millisecond), time.Time{}
	long := fullTEK("g", 0x2)
	long.Expires, long.Deactivate = now.Add(time.Hour), now.Add(200*time.Millisecond) // replaced by a rekey
	keep := fullTEK("g", 0x3)
	keep.Expires, keep.Deactivate = now.Add(time.Hour), time.Time{}
	kek := fullKEK("g")
	kek.Expires = now.Add(300 * time.Millisecond)
	for _, tk := range []sadb.TEK{short, long, keep} {
		if err := c.InstallTEK(tk); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.InstallKEK(kek); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// The sweep logs each expiry once the SA is out of the database: wait
	// for the three, then nothing else may have gone.
	expired := []string{`msg="TEK expired" group=g spi=0xdeadbeef reason=lifetime`, `msg="TEK expired" group=g spi=0x00000002 reason=deactivated`, `msg="KEK expired" group=g`}
	logs.WaitFor(5*time.Second, func(l string) bool {
		for _, want := range expired {
			if !strings.Contains(l, want) {
				return false
			}
		}
		return true
	})
	if len(r.srv.DB().TEKs()) != 1 || len(r.srv.DB().KEKs()) != 0 {
		t.Fatalf("not expired: TEKs %d KEKs %d", len(r.srv.DB().TEKs()), len(r.srv.DB().KEKs()))
	}
	if got := r.srv.DB().TEKs()[0].SPI; got != 0x3 {
		t.Fatalf("kept SPI 0x%x", got)
	}
	l := logs.String()
	for _, want := range expired {
		if !strings.Contains(l, want) {
			t.Errorf("log lacks %q:\n%s", want, l)
		}
	}
}

// proves: D1 (expiry follows tmd's clock: Expires, Deactivate, KEK Expires)
func TestSweepInjectedClock(t *testing.T) {
	var logs logBuf
	s := NewServer(Options{Logger: logs.logger(), Now: func() time.Time { return t0 }})
	a := sadb.TEK{Group: "g", SPI: 1, Expires: t0.Add(10 * time.Minute)}
	b := sadb.TEK{Group: "g", SPI: 2, Expires: t0.Add(10 * time.Minute), Deactivate: t0.Add(time.Minute)}
	forever := sadb.TEK{Group: "g", SPI: 3}
	for _, tk := range []sadb.TEK{a, b, forever} {
		s.DB().InstallTEK(tk)
	}
	s.DB().InstallKEK(sadb.KEK{Group: "g", Expires: t0.Add(5 * time.Minute)})
	spis := func() (out []uint32) {
		for _, tk := range s.DB().TEKs() {
			out = append(out, tk.SPI)
		}
		return out
	}
	steps := []struct {
		at       time.Duration
		next     time.Duration // 0: none
		spis     []uint32
		kekCount int
	}{
		{0, time.Minute, []uint32{1, 2, 3}, 1},
		{time.Minute - time.Nanosecond, time.Minute, []uint32{1, 2, 3}, 1},
		{time.Minute, 5 * time.Minute, []uint32{1, 3}, 1},
		{5 * time.Minute, 10 * time.Minute, []uint32{1, 3}, 0},
		{10 * time.Minute, 0, []uint32{3}, 0},
	}
	for _, st := range steps {
		next := s.Sweep(t0.Add(st.at))
		wantNext := time.Time{}
		if st.next != 0 {
			wantNext = t0.Add(st.next)
		}
		if !next.Equal(wantNext) {
			t.Errorf("at +%v: next %v, want %v", st.at, next, wantNext)
		}
		if got := spis(); !reflect.DeepEqual(got, st.spis) {
			t.Errorf("at +%v: SPIs %v, want %v", st.at, got, st.spis)
		}
		if got := len(s.DB().KEKs()); got != st.kekCount {
			t.Errorf("at +%v: %d KEKs, want %d", st.at, got, st.kekCount)
		}
	}
	if !strings.Contains(logs.String(), "spi=0x00000002") {
		t.Errorf("log: %s", logs.String())
	}
}

// proves: D2 (a protocol daemon started without tmd is told to start tmd first)
func TestDialNotRunning(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tmd.sock")
	_, err := Dial(context.Background(), path, "isakmpd", nil)
	if !errors.Is(err, ErrNotRunning) || !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("err = %v", err)
	}
	want := "tmd is not running (no socket at " + path + "): start it first: startsrc -s tmd"
	if err.Error() != want {
		t.Fatalf("message\n got %q\nwant %q", err, want)
	}
	// A stale socket left by a dead tmd: refused, still "not running".
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	_, err = Dial(context.Background(), path, "isakmpd", nil)
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "start it first: startsrc -s tmd") {
		t.Fatalf("stale socket: %v", err)
	}
	// tmd removes the stale socket and starts.
	start(t, path, nil)
	dial(t, path, "isakmpd")
}

// proves: D1 (one tmd per socket; mode 0600; socket removed on exit)
func TestSingleInstanceAndSocketFile(t *testing.T) {
	path := sockPath(t)
	r := start(t, path, nil)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v", fi.Mode().Perm())
	}
	err = NewServer(Options{}).Serve(context.Background(), path)
	want := fmt.Sprintf("tmd is already running on %s (pid %d)", path, os.Getpid())
	if err == nil || err.Error() != want {
		t.Fatalf("second Serve: %v, want %q", err, want)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
	// Not a socket: left alone.
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := NewServer(Options{}).Serve(context.Background(), path); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Serve over a file: %v", err)
	}
}

// rawConn is a hand-driven protocol connection.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	rd *bufio.Reader
}

func rawDial(t *testing.T, path string) *rawConn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, c: c, rd: bufio.NewReaderSize(c, MaxLine+16)}
}

func (r *rawConn) send(line string) Response {
	r.t.Helper()
	if _, err := r.c.Write([]byte(line + "\n")); err != nil {
		r.t.Fatal(err)
	}
	return r.recv()
}

func (r *rawConn) recv() Response {
	r.t.Helper()
	l, err := r.rd.ReadBytes('\n')
	if err != nil {
		r.t.Fatalf("reading: %v", err)
	}
	var resp Response
	if err := json.Unmarshal(l, &resp); err != nil {
		r.t.Fatalf("answer %q: %v", l, err)
	}
	return resp
}

// proves: D1 (the API is versioned: a client of another version is
// refused with advice; issue 12: an isakmpd of API version 1, which
// cannot hand tmd the policy, is refused by a tmd of version 2)
func TestAPIVersionMismatch(t *testing.T) {
	path := sockPath(t)
	start(t, path, nil)
	for _, c := range []struct{ asked, want string }{
		{"1", `{"error":"tmd speaks API version 2; the client asked for 1: upgrade tmd and the IKE daemons together"}` + "\n"},
		{"3", `{"error":"tmd speaks API version 2; the client asked for 3: upgrade tmd and the IKE daemons together"}` + "\n"},
	} {
		r := rawDial(t, path)
		if _, err := r.c.Write([]byte(`{"hello":{"api":` + c.asked + `,"client":"isakmpd","pid":123}}` + "\n")); err != nil {
			t.Fatal(err)
		}
		l, err := r.rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l != c.want {
			t.Fatalf("answer\n got %s\nwant %s", l, c.want)
		}
		if _, err := r.rd.ReadByte(); err == nil {
			t.Fatal("connection not closed after the refusal")
		}
	}
	ok := rawDial(t, path).send(`{"hello":{"api":2,"client":"isakmpd","pid":123}}`)
	if !ok.OK || ok.API != 2 || ok.Server != "tmd" || ok.PID != os.Getpid() {
		t.Fatalf("hello answer %+v", ok)
	}
}

// proves: D1 (malformed or oversized lines are answered and counted; tmd keeps serving)
func TestMalformedLines(t *testing.T) {
	path := sockPath(t)
	start(t, path, nil)
	r := rawDial(t, path)
	if resp := r.send(`{"op":"list"}`); resp.Error == "" || !strings.Contains(resp.Error, "hello") {
		t.Fatalf("op before hello: %+v", resp)
	}
	if resp := r.send(`{"hello":{"api":2,"client":"fuzz","pid":1}}`); !resp.OK {
		t.Fatalf("hello: %+v", resp)
	}
	for _, bad := range []string{
		`not json`,
		`{"op":`,
		`{"op":"install-tek","tek":{"SPI":"nope"}}`,
		`{"op":"set-fail-mode","group":"g","mode":"fail-sideways"}`,
		`{"op":"install-tek"}`,
		`{"op":"install-tek","tek":{"Group":"g","SPI":0}}`,
		`{"op":"frobnicate"}`,
		`{}`,
		`[1,2,3]`,
		`{"op":"delete-tek","group":"g","spi":9}`,
		`{"op":"install-tek","tek":{"Group":"g","SPI":1,"Src":"10.0.0.0/99"}}`,
		strings.Repeat("x", MaxLine+10),
	} {
		resp := r.send(bad)
		if resp.OK || resp.Error == "" {
			t.Errorf("%.40q answered %+v", bad, resp)
		}
	}
	if resp := r.send(`{"op":"install-tek","tek":{"Group":"g","SPI":1,"Src":"10.0.0.0/8"}}`); !resp.OK {
		t.Fatalf("good line after bad ones: %+v", resp)
	}
	resp := r.send(`{"op":"status"}`)
	if !resp.OK || resp.Status == nil || resp.Status.Malformed != 7 || resp.Status.TEKs != 1 {
		t.Fatalf("status: %+v %+v", resp, resp.Status)
	}
	// Another client is served as well.
	c := dial(t, path, "isakmpd")
	if got := c.TEKs(); len(got) != 1 || got[0].Src != netip.MustParsePrefix("10.0.0.0/8") {
		t.Fatalf("TEKs: %+v", got)
	}
}

// proves: D1 (tmd restarted empty gets the client's SAs pushed back on the next write)
func TestRestartedTmdGetsMirror(t *testing.T) {
	path := sockPath(t)
	r1 := start(t, path, nil)
	var logs logBuf
	c, err := dialKeepalive(context.Background(), path, "isakmpd", logs.logger(), 0) // no keepalive: the write pushes
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := fullTEK("g", 0xa)
	a.Expires, a.Deactivate = time.Now().Add(time.Hour), time.Time{}
	gone := fullTEK("g", 0xb)
	gone.Expires, gone.Deactivate = time.Now().Add(time.Hour), time.Time{}
	kek := fullKEK("g")
	kek.Expires = time.Now().Add(time.Hour)
	for _, err := range []error{c.InstallTEK(a), c.InstallTEK(gone), c.InstallKEK(kek), c.DeleteTEK("g", 0xb)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	c.SetFailMode("g", sadb.FailClose)
	if err := r1.stop(); err != nil {
		t.Fatal(err)
	}

	// tmd down: the write is kept locally and reported; reads fall back.
	down := fullTEK("g", 0xc)
	down.Expires, down.Deactivate = time.Now().Add(time.Hour), time.Time{}
	err = c.InstallTEK(down)
	if !errors.Is(err, ErrNotRunning) {
		t.Fatalf("install while tmd is down: %v", err)
	}
	if got := c.TEKs(); len(got) != 2 {
		t.Fatalf("fallback TEKs: %+v", got)
	}
	if got, _, ferr := c.Fetch(context.Background()); ferr == nil || len(got) != 2 {
		t.Fatalf("Fetch while tmd is down: %d TEKs, err %v", len(got), ferr)
	}
	if c.FailMode("g") != sadb.FailClose {
		t.Fatal("fallback fail mode")
	}
	if !strings.Contains(logs.String(), "kept locally") || !strings.Contains(logs.String(), "local copy") {
		t.Errorf("log:\n%s", logs.String())
	}

	r2 := start(t, path, nil)
	if n := len(r2.srv.DB().TEKs()); n != 0 {
		t.Fatalf("new tmd not empty: %d", n)
	}
	last := fullTEK("g", 0xd)
	last.Expires, last.Deactivate = time.Now().Add(time.Hour), time.Time{}
	if err := c.InstallTEK(last); err != nil {
		t.Fatalf("install after tmd restart: %v", err)
	}
	var spis []uint32
	for _, tk := range r2.srv.DB().TEKs() {
		spis = append(spis, tk.SPI)
	}
	if !reflect.DeepEqual(spis, []uint32{0xa, 0xc, 0xd}) {
		t.Fatalf("restarted tmd holds SPIs %x", spis)
	}
	if len(r2.srv.DB().KEKs()) != 1 || r2.srv.DB().FailMode("g") != sadb.FailClose {
		t.Fatalf("restarted tmd: KEKs %+v fail %v", r2.srv.DB().KEKs(), r2.srv.DB().FailMode("g"))
	}
	if got := r2.srv.DB().TEKs()[0]; !reflect.DeepEqual(got.SenderIDs, a.SenderIDs) || got.Src != a.Src || !got.Expires.Equal(a.Expires) {
		t.Fatalf("pushed TEK %+v", got)
	}
}

// proves: D1 (the client is safe for concurrent use: the node writes while show commands read)
func TestConcurrentUse(t *testing.T) {
	path := sockPath(t)
	r := start(t, path, nil)
	c := dial(t, path, "isakmpd")
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				spi := uint32(w*1000 + i + 1)
				tk := sadb.TEK{Group: fmt.Sprintf("g%d", w), SPI: spi, Expires: time.Now().Add(time.Hour)}
				if err := c.InstallTEK(tk); err != nil {
					t.Error(err)
					return
				}
				if i%2 == 0 {
					if err := c.DeleteTEK(tk.Group, spi); err != nil {
						t.Error(err)
						return
					}
				}
				c.SetFailMode(tk.Group, sadb.FailMode(i%2))
			}
		})
		wg.Go(func() {
			for range 50 {
				c.TEKs()
				c.KEKs()
				c.FailMode("g0")
				if _, err := c.Status(context.Background()); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := len(r.srv.DB().TEKs()); got != 4*25 {
		t.Fatalf("tmd holds %d TEKs, want 100", got)
	}
	if got := len(c.TEKs()); got != 100 {
		t.Fatalf("client sees %d TEKs", got)
	}
}

// proves: D1 (readLine bounds lines and resynchronizes after an oversized one)
func TestReadLine(t *testing.T) {
	in := "a\r\n" + strings.Repeat("y", MaxLine) + "\n" + strings.Repeat("z", MaxLine+1) + "\nb\nlast"
	rd := bufio.NewReaderSize(strings.NewReader(in), 4096)
	for i, want := range []string{"a", strings.Repeat("y", MaxLine), "", "b", "last"} {
		l, err := readLine(rd)
		if want == "" {
			if !errors.Is(err, errLineTooLong) {
				t.Fatalf("line %d: err %v", i, err)
			}
			continue
		}
		if err != nil || string(l) != want {
			t.Fatalf("line %d: %.20q %v", i, l, err)
		}
	}
	if _, err := readLine(rd); err == nil {
		t.Fatal("no EOF")
	}
}

// proves: D1 (a client refused for its API version reports tmd's advice)
func TestDialVersionRefused(t *testing.T) {
	path := sockPath(t)
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		bufio.NewReader(c).ReadBytes('\n')
		// What a tmd speaking API version 3 answers a version-2 client.
		c.Write([]byte(`{"error":"tmd speaks API version 3; the client asked for 2: upgrade tmd and the IKE daemons together"}` + "\n"))
	}()
	_, err = Dial(context.Background(), path, "isakmpd", nil)
	want := "tmd refused the connection: tmd speaks API version 3; the client asked for 2: upgrade tmd and the IKE daemons together"
	if err == nil || err.Error() != want || errors.Is(err, ErrNotRunning) {
		t.Fatalf("err = %v", err)
	}
}

// proves: D1 (tmd restarted empty gets the SAs back from the keepalive,
// with no SA change in the daemon)
func TestKeepalivePushesToRestartedTmd(t *testing.T) {
	path := sockPath(t)
	r1 := start(t, path, nil)
	var logs logBuf
	c, err := dialKeepalive(context.Background(), path, "isakmpd", logs.logger(), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := fullTEK("g", 0xa)
	a.Expires, a.Deactivate = time.Now().Add(time.Hour), time.Time{}
	if err := c.InstallTEK(a); err != nil {
		t.Fatal(err)
	}
	if err := r1.stop(); err != nil {
		t.Fatal(err)
	}
	waitLog := func(what string) {
		t.Helper()
		logs.WaitContains(t, 5*time.Second, what)
	}
	waitLog("tmd unreachable; keeping the SAs locally and retrying")
	r2 := start(t, path, nil)
	waitLog("tmd reachable again; SAs written back")
	if got := r2.srv.DB().TEKs(); len(got) != 1 || got[0].SPI != 0xa {
		t.Fatalf("restarted tmd holds %+v, want the TEK 0xa", got)
	}
	if n := strings.Count(logs.String(), "tmd unreachable; keeping"); n != 1 {
		t.Errorf("the loss was logged %d times, want once:\n%s", n, logs.String())
	}
}
