package ctl

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// bigLine is line i of the synthetic output: 41 bytes with its newline,
// shaped like a member's first line.
func bigLine(b []byte, i int) []byte {
	return fmt.Appendf(b, "Group Member ID : 10.%03d.%03d.%03d #%06d\n", i>>16&255, i>>8&255, i&255, i%1000000)
}

// bigServer has `show big N`: N lines of bigLine, rendered as the client
// reads (produced counts the bytes rendered so far), and `show forever`,
// which renders until the client goes away.
func bigServer(produced *atomic.Int64) *Server {
	s := NewServer(nil)
	render := func(n int) func(io.Writer) error {
		return func(w io.Writer) error {
			buf := make([]byte, 0, 4096)
			for i := 0; n < 0 || i < n; i++ {
				buf = bigLine(buf, i)
				if len(buf) >= 4000 || i == n-1 {
					if _, err := w.Write(buf); err != nil {
						return err
					}
					produced.Add(int64(len(buf)))
					buf = buf[:0]
				}
			}
			return nil
		}
	}
	s.HandleReadOnly("show big NUMBER", "N lines", func(_ context.Context, r *Request) (*Reply, error) {
		var n int
		fmt.Sscan(r.Args["big"], &n)
		return &Reply{Stream: render(n)}, nil
	})
	s.HandleReadOnly("show forever", "endless output", func(context.Context, *Request) (*Reply, error) {
		return &Reply{Stream: render(-1)}, nil
	})
	return s
}

type countWriter struct{ bytes, lines int }

func (c *countWriter) Write(p []byte) (int, error) {
	c.bytes += len(p)
	c.lines += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}

// proves: O2 (issue 18: a reply of 40 MiB streams through the control
// socket in chunks, whole and in order, where one line was limited to 16
// MiB; `| count` and `| include` over it are right; Client.Do keeps at
// most MaxText and says the output was cut; a client that does not stream
// gets one bounded line saying why)
func TestStream40MiBReply(t *testing.T) {
	var produced atomic.Int64
	path := serve(t, bigServer(&produced))
	const lines = 1 << 20 // 41 MiB
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	var cw countWriter
	h := &lineHasher{}
	resp, err := c.Stream(ctx, &WireRequest{Cmd: fmt.Sprintf("show big %d", lines)}, io.MultiWriter(&cw, h))
	if err != nil || !resp.OK {
		t.Fatalf("stream: %+v %v", resp, err)
	}
	if cw.bytes != 41*lines || cw.lines != lines || h.bad != 0 {
		t.Fatalf("streamed %d bytes, %d lines (%d out of order), want %d and %d", cw.bytes, cw.lines, h.bad, 41*lines, lines)
	}

	// the expected answers, computed from the same lines
	re := regexp.MustCompile(`#0000[0-9]7$`)
	var n7 int
	var ones []string
	for i := range lines {
		l := strings.TrimSuffix(string(bigLine(nil, i)), "\n")
		if re.MatchString(l) {
			n7++
		}
		if strings.HasSuffix(l, "#000001") {
			b, _ := json.Marshal(l)
			ones = append(ones, "    "+string(b))
		}
	}
	for cmd, want := range map[string]string{
		fmt.Sprintf("show big %d | count", lines):                              fmt.Sprintf("Number of lines which match regexp = %d\n", lines),
		fmt.Sprintf("show big %d | count #0000[0-9]7$", lines):                 fmt.Sprintf("Number of lines which match regexp = %d\n", n7),
		fmt.Sprintf("show big %d | include #424242$", lines):                   string(bigLine(nil, 424242)),
		fmt.Sprintf("show big %d | begin #048574$ | count", lines):             fmt.Sprintf("Number of lines which match regexp = %d\n", lines-48574),
		fmt.Sprintf("show big %d | exclude 10.0 | count", lines):               "Number of lines which match regexp = 0\n",
		fmt.Sprintf("show big %d | include #000001$ | json", lines):            "{\n  \"text\": [\n" + strings.Join(ones, ",\n") + "\n  ]\n}\n",
		fmt.Sprintf("show big %d | section 10.000.000.00[0-2] | count", lines): "Number of lines which match regexp = 3\n",
	} {
		r, err := c.Run(ctx, cmd)
		if err != nil || !r.OK || r.Text != want {
			t.Errorf("%s: %q %v, want %q", cmd, r.Text, err, want)
		}
	}

	// Client.Do: bounded, and says it was cut
	r, err := c.Do(ctx, &WireRequest{Cmd: fmt.Sprintf("show big %d", lines)})
	if err != nil || r.OK || !r.Truncated || len(r.Text) > MaxText || len(r.Text) < MaxText-64 || !strings.Contains(r.Error, "Output longer than 16 MiB") {
		t.Errorf("Do: ok %v truncated %v, %d bytes, %q, %v", r.OK, r.Truncated, len(r.Text), r.Error, err)
	}
	// the connection is still usable
	if r, err := c.Run(ctx, "show big 3 | count"); err != nil || r.Text != "Number of lines which match regexp = 3\n" {
		t.Errorf("after: %+v %v", r, err)
	}

	// a client of the previous release (no "stream"): one line, at most
	// MaxResponse, saying why
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, `{"v":1,"id":5,"cmd":"show big %d"}`+"\n", lines)
	rd := bufio.NewReader(conn)
	line, err := readLine(rd, MaxResponse)
	var old WireResponse
	if err != nil || json.Unmarshal(line, &old) != nil || old.ID != 5 || old.OK || old.More || !old.Truncated || !strings.Contains(old.Error, "streams long output") {
		t.Fatalf("old client: %.200q %v", line, err)
	}
	fmt.Fprintf(conn, `{"v":1,"id":6,"cmd":"show big 2"}`+"\n")
	if line, err = readLine(rd, MaxResponse); err != nil || json.Unmarshal(line, &old) != nil || !old.OK || old.More || strings.Count(old.Text, "\n") != 2 {
		t.Fatalf("old client, short reply: %q %v", line, err)
	}
}

// lineHasher checks that the streamed lines come in order: line i ends
// in #i mod 1,000,000.
type lineHasher struct {
	n, bad  int
	partial []byte
}

func (h *lineHasher) Write(p []byte) (int, error) {
	data := append(h.partial, p...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		want := fmt.Sprintf("#%06d", h.n%1000000)
		if !bytes.HasSuffix(data[:i], []byte(want)) {
			h.bad++
		}
		h.n++
		data = data[i+1:]
	}
	h.partial = append(h.partial[:0], data...)
	return len(p), nil
}

// proves: S1, O2 (issue 18: a client that reads a streamed reply slowly,
// or not at all, holds the server to a bounded amount of rendered output:
// the renderer blocks on the socket instead of buffering the reply)
func TestStreamSlowReaderBoundsServer(t *testing.T) {
	var produced atomic.Int64
	path := serve(t, bigServer(&produced))
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, `{"v":1,"id":1,"cmd":"show forever","stream":true}`+"\n")
	// the renderer fills the socket's buffers and stops
	var last int64 = -1
	waitFor(t, "the renderer to block", func() bool {
		time.Sleep(50 * time.Millisecond)
		p := produced.Load()
		stable := p == last && p > 0
		last = p
		return stable
	})
	const bound = 8 << 20 // socket buffers (a few hundred KiB) and one chunk, with room
	if p := produced.Load(); p > bound {
		t.Fatalf("a client reading nothing let the server render %d bytes (bound %d)", p, bound)
	}
	t.Logf("rendered while the client reads nothing: %d KiB", produced.Load()>>10)
	// reading slowly: the renderer follows the reader
	rd := bufio.NewReader(conn)
	read := 0
	for range 20 {
		line, err := readLine(rd, MaxResponse)
		if err != nil {
			t.Fatal(err)
		}
		read += len(line)
		time.Sleep(2 * time.Millisecond)
	}
	if p := produced.Load(); p > int64(read)+bound {
		t.Fatalf("rendered %d bytes for %d read", p, read)
	}
}

// proves: S1 (issue 18: hostile clients of a streamed reply, one that
// never reads and one that disconnects mid-stream, cost no goroutine
// after they are gone: the reply ends at the write timeout or error, and
// each is counted)
func TestStreamHostileClientsDoNotLeak(t *testing.T) {
	var produced atomic.Int64
	s := bigServer(&produced)
	s.SetLimits(Limits{StreamTimeout: 200 * time.Millisecond})
	path := serve(t, s)
	runtime.GC()
	base := runtime.NumGoroutine()

	var conns []net.Conn
	for i := range 8 {
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		fmt.Fprintf(conn, `{"v":1,"id":1,"cmd":"show forever","stream":true}`+"\n")
		if i%2 == 1 { // reads a little, then goes away mid-stream
			rd := bufio.NewReader(conn)
			for range 5 {
				if _, err := readLine(rd, MaxResponse); err != nil {
					t.Fatal(err)
				}
			}
			conn.Close()
		}
	}
	// the readers that never read are dropped at StreamTimeout
	waitFor(t, "every streamed reply to end", func() bool { return s.Stats().Open == 0 })
	if st := s.Stats(); st.WriteTimeouts < 4 {
		t.Errorf("stats %+v: want the 4 clients that never read counted as write timeouts", st)
	}
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, "the goroutines to end", func() bool { return runtime.NumGoroutine() <= base+2 })

	// the server still serves
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r, err := c.Run(context.Background(), "show big 10 | count"); err != nil || r.Text != "Number of lines which match regexp = 10\n" {
		t.Fatalf("after: %+v %v", r, err)
	}
}

// proves: O2 (issue 18: the streamed replies are a versioned addition: a
// reply of one line, as a daemon of the previous release sends it, still
// parses in Client.Do and Client.Stream; chunk lines of another request,
// a chunk after the client's writer stopped, or lines of another version
// are refused, and the connection is then redialed)
func TestStreamOldSingleLineReply(t *testing.T) {
	path := filepath.Join(sockDir(t), "old.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	replies := make(chan string, 8)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				rd := bufio.NewReader(conn)
				for {
					line, err := readLine(rd, MaxRequest)
					if err != nil {
						return
					}
					var req WireRequest
					json.Unmarshal(line, &req)
					io.WriteString(conn, fmt.Sprintf(<-replies, req.ID))
				}
			}()
		}
	}()
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	replies <- `{"v":1,"id":%d,"ok":true,"text":"one line\n","data":{"a":1}}` + "\n"
	r, err := c.Do(ctx, &WireRequest{Cmd: "show x"})
	if err != nil || !r.OK || r.Text != "one line\n" || string(r.Data) != `{"a":1}` {
		t.Fatalf("Do, old reply: %+v %v", r, err)
	}
	replies <- `{"v":1,"id":%d,"ok":true,"text":"one line\n"}` + "\n"
	var out bytes.Buffer
	if r, err := c.Stream(ctx, &WireRequest{Cmd: "show x"}, &out); err != nil || !r.OK || out.String() != "one line\n" {
		t.Fatalf("Stream, old reply: %+v %v %q", r, err, out.String())
	}
	replies <- `{"v":1,"id":%d,"ok":true,"more":true,"text":"a\n"}` + "\n" + `{"v":1,"id":99,"ok":true,"text":"b\n"}` + "\n"
	if _, err := c.Do(ctx, &WireRequest{Cmd: "show x"}); !errors.Is(err, ErrConnection) || !strings.Contains(err.Error(), "expected") {
		t.Fatalf("a last line of another request: %v", err)
	}
	replies <- `{"v":2,"id":%d,"ok":true,"text":"b\n"}` + "\n"
	if _, err := c.Do(ctx, &WireRequest{Cmd: "show x"}); !errors.Is(err, ErrConnection) || !strings.Contains(err.Error(), "version 2") {
		t.Fatalf("another version: %v", err)
	}
}

// proves: O2 (issue 18: the pager shows a page, then --More--: space a
// page, return a line, q stops the output; on a real socket q ends the
// stream without reading the rest, the daemon stops rendering, and the
// next command is answered on a new connection)
func TestPagerStopsStream(t *testing.T) {
	var out bytes.Buffer
	p := &pager{out: &out, in: strings.NewReader(" \rq"), length: 4}
	var err error
	for i := range 100 {
		if _, err = fmt.Fprintf(p, "line %d\n", i); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrStopped) {
		t.Fatalf("pager: %v", err)
	}
	shown := strings.Count(out.String(), "line ")
	if shown != 3+3+1 || strings.Count(out.String(), "--More--") != 3 {
		t.Fatalf("pager showed %d lines:\n%s", shown, out.String())
	}
	p = &pager{out: &out, in: strings.NewReader(""), length: 0}
	for i := range 100 {
		if _, err := fmt.Fprintf(p, "line %d\n", i); err != nil {
			t.Fatal("length 0 pages")
		}
	}

	var produced atomic.Int64
	path := serve(t, bigServer(&produced))
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out.Reset()
	p = &pager{out: &out, in: strings.NewReader("q"), length: 24}
	if _, err := c.Stream(context.Background(), &WireRequest{Cmd: "show forever"}, p); !errors.Is(err, ErrStopped) {
		t.Fatalf("q: %v", err)
	}
	var last int64 = -1
	waitFor(t, "the renderer to stop", func() bool {
		time.Sleep(50 * time.Millisecond)
		p := produced.Load()
		stable := p == last
		last = p
		return stable
	})
	if p := produced.Load(); p > 8<<20 {
		t.Fatalf("after q the daemon rendered %d bytes", p)
	}
	if r, err := c.Run(context.Background(), "show big 5 | count"); err != nil || r.Text != "Number of lines which match regexp = 5\n" {
		t.Fatalf("after q: %+v %v", r, err)
	}
}

// FuzzReadReply feeds the chunk framing reader hostile reply streams.
//
// proves: S4 (issue 18: the chunk reader never panics, writes no more
// text than it was sent, and always ends)
func FuzzReadReply(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":1,"ok":true,"more":true,"text":"a\n"}` + "\n" + `{"v":1,"id":1,"ok":true,"text":"b\n"}` + "\n"))
	f.Add([]byte(`{"v":1,"id":1,"ok":true,"text":"one line\n","data":{"a":1}}` + "\n"))
	f.Add([]byte(`{"v":1,"id":1,"more":true,"text":"x"}` + "\n" + `{"v":1,"id":2}` + "\n"))
	f.Add([]byte(`{"v":1,"id":1,"more":true}` + "\n" + `{"v":1,"id":1,"more":true,"text":"\u0000"}`))
	f.Add([]byte(`{"v":1,"id":0,"error":"too many"}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var cw countWriter
		resp, err := readReply(newTestReader(b), 1, &cw)
		if cw.bytes > len(b) {
			t.Fatalf("wrote %d bytes from %d", cw.bytes, len(b))
		}
		if err == nil && (resp == nil || resp.More || resp.ID != 1) {
			t.Fatalf("reply %+v", resp)
		}
	})
}

// BenchmarkStreamOverSocket is 1,048,576 lines (41 MiB) through a real
// control socket, streamed, and the same with `| count`.
func BenchmarkStreamOverSocket(b *testing.B) {
	var produced atomic.Int64
	s := bigServer(&produced)
	dir, err := os.MkdirTemp("", "ctlbench")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ln, err := Listen(filepath.Join(dir, "ctl.sock"))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.ServeListener(ctx, ln)
	c, err := Dial(filepath.Join(dir, "ctl.sock"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for _, cmd := range []string{"show big 1048576", "show big 1048576 | count"} {
		b.Run(strings.ReplaceAll(cmd, " ", "_"), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(41 << 20)
			for b.Loop() {
				var cw countWriter
				if r, err := c.Stream(context.Background(), &WireRequest{Cmd: cmd}, &cw); err != nil || !r.OK {
					b.Fatal(r, err)
				}
			}
		})
	}
}
