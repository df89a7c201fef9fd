package ctl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
)

// Streamed output (issue 18). A command's output flows line by line from
// the handler's renderer (Reply.Stream) or its text, through the output
// filters (each a lineSink), into a chunker that either writes reply
// chunks to the connection as they fill (a client that asked for
// "stream") or collects them, bounded, into one reply. Nothing here holds
// more than a chunk, one line and, for `| section`, nothing but the
// section's indentation.

// ChunkSize is the most text one chunk line of a streamed reply carries
// (whole lines; a single longer line is cut at maxLine).
const ChunkSize = 32 << 10

// maxLine bounds one output line: a longer one is cut into pieces of this
// size (output of our own renderers never comes close).
const maxLine = 64 << 10

// MaxText is the most text a reply collected into one string carries: the
// single-line reply of a client that does not stream, Session.Do, and
// Client.Do. Past it the output is cut (WireResponse.Truncated) or, on the
// socket, refused with an error saying how to get it whole.
const MaxText = 16 << 20

// errTooMuch: the output does not fit a collected reply.
var errTooMuch = errors.New("output too long")

// lineSink is one stage of the output pipeline.
type lineSink interface {
	line(l []byte) error // one line, without its '\n'; l is only valid during the call
	end() error          // no more lines
}

// lineWriter splits what a renderer writes into lines for a sink.
type lineWriter struct {
	next    lineSink
	partial []byte
	err     error
}

func (w *lineWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := maxLine - len(w.partial)
			if len(p) < room {
				w.partial = append(w.partial, p...)
				break
			}
			w.partial = append(w.partial, p[:room]...)
			p = p[room:]
			if w.err = w.flushPartial(); w.err != nil {
				return 0, w.err
			}
			continue
		}
		seg := p[:i]
		p = p[i+1:]
		if len(w.partial) > 0 {
			if len(w.partial)+len(seg) > maxLine {
				seg = seg[:maxLine-len(w.partial)]
			}
			w.partial = append(w.partial, seg...)
			w.err = w.flushPartial()
		} else {
			if len(seg) > maxLine {
				seg = seg[:maxLine]
			}
			w.err = w.next.line(seg)
		}
		if w.err != nil {
			return 0, w.err
		}
	}
	return n, nil
}

func (w *lineWriter) WriteString(s string) (int, error) { return w.Write([]byte(s)) }

func (w *lineWriter) flushPartial() error {
	err := w.next.line(w.partial)
	w.partial = w.partial[:0]
	return err
}

// Close passes a last line without '\n' on and ends the sink.
func (w *lineWriter) Close() error {
	if w.err != nil {
		return w.err
	}
	if len(w.partial) > 0 {
		if w.err = w.flushPartial(); w.err != nil {
			return w.err
		}
	}
	w.err = w.next.end()
	if w.err == nil {
		w.err = errors.New("closed")
		return nil
	}
	return w.err
}

// matchSink is `| include` (keep) and `| exclude` (!keep).
type matchSink struct {
	re   *regexp.Regexp
	keep bool
	next lineSink
}

func (s *matchSink) line(l []byte) error {
	if s.re.Match(l) == s.keep {
		return s.next.line(l)
	}
	return nil
}
func (s *matchSink) end() error { return s.next.end() }

// beginSink is `| begin`: everything from the first line that matches.
type beginSink struct {
	re      *regexp.Regexp
	started bool
	next    lineSink
}

func (s *beginSink) line(l []byte) error {
	if !s.started && !s.re.Match(l) {
		return nil
	}
	s.started = true
	return s.next.line(l)
}
func (s *beginSink) end() error { return s.next.end() }

// sectionSink is `| section`: a matching line and the non-empty lines
// indented more deeply that follow it.
type sectionSink struct {
	re   *regexp.Regexp
	in   bool
	lvl  int
	next lineSink
}

func (s *sectionSink) line(l []byte) error {
	if s.in && len(l) > 0 && indentBytes(l) > s.lvl {
		return s.next.line(l)
	}
	s.in = false
	if !s.re.Match(l) {
		return nil
	}
	s.in, s.lvl = true, indentBytes(l)
	return s.next.line(l)
}
func (s *sectionSink) end() error { return s.next.end() }

func indentBytes(l []byte) int { return len(l) - len(bytes.TrimLeft(l, " \t")) }

// countSink is `| count [RE]`.
type countSink struct {
	re   *regexp.Regexp
	n    int
	next lineSink
}

func (s *countSink) line(l []byte) error {
	if s.re == nil || s.re.Match(l) {
		s.n++
	}
	return nil
}

func (s *countSink) end() error {
	if err := s.next.line(fmt.Appendf(nil, "Number of lines which match regexp = %d", s.n)); err != nil {
		return err
	}
	return s.next.end()
}

// jsonTextSink is `| json` over text: {"text": [lines]}, laid out as
// json.MarshalIndent lays it out, one line held back for its comma.
type jsonTextSink struct {
	next    lineSink
	started bool
	held    []byte // the previous line, encoded
	have    bool
}

func (s *jsonTextSink) line(l []byte) error {
	if !s.started {
		s.started = true
		if err := s.next.line([]byte("{")); err != nil {
			return err
		}
		if err := s.next.line([]byte(`  "text": [`)); err != nil {
			return err
		}
	}
	if s.have {
		if err := s.next.line(append(s.held, ',')); err != nil {
			return err
		}
	}
	b, err := json.Marshal(string(l))
	if err != nil {
		return err
	}
	s.held, s.have = append(append(s.held[:0], "    "...), b...), true
	return nil
}

func (s *jsonTextSink) end() error {
	var tail []string
	if !s.started {
		tail = []string{"{", `  "text": []`, "}"}
	} else {
		if s.have {
			if err := s.next.line(s.held); err != nil {
				return err
			}
		}
		tail = []string{"  ]", "}"}
	}
	for _, t := range tail {
		if err := s.next.line([]byte(t)); err != nil {
			return err
		}
	}
	return s.next.end()
}

// chunker collects output lines into chunks of at most ChunkSize bytes
// and hands each to emit; with emit nil it keeps them, up to limit bytes.
type chunker struct {
	emit  func(chunk []byte) error
	buf   []byte
	limit int
	total int
	cut   bool // collecting: output past limit dropped
	lines int
}

func (c *chunker) line(l []byte) error {
	c.lines++
	if c.emit == nil {
		if c.cut || len(c.buf)+len(l)+1 > c.limit {
			c.cut = true
			return errTooMuch
		}
		c.buf = append(append(c.buf, l...), '\n')
		return nil
	}
	if len(c.buf) > 0 && len(c.buf)+len(l)+1 > ChunkSize {
		if err := c.flush(); err != nil {
			return err
		}
	}
	c.buf = append(append(c.buf, l...), '\n')
	return nil
}

func (c *chunker) flush() error {
	if c.emit == nil || len(c.buf) == 0 {
		return nil
	}
	c.total += len(c.buf)
	err := c.emit(c.buf)
	c.buf = c.buf[:0]
	return err
}

func (c *chunker) end() error { return nil }

// pipeline builds the filter chain in front of out. jsonFirst reports
// whether the first stage is `| json` (the caller then feeds the
// command's data instead of its text, when it has some, and the stage is
// skipped).
func pipeline(fs []filter, out lineSink, dataFirst bool) lineSink {
	start := 0
	if dataFirst && len(fs) > 0 && fs[0].kind == fJSON {
		start = 1
	}
	sink := out
	for i := len(fs) - 1; i >= start; i-- {
		f := fs[i]
		switch f.kind {
		case fInclude, fExclude:
			sink = &matchSink{re: f.re, keep: f.kind == fInclude, next: sink}
		case fBegin:
			sink = &beginSink{re: f.re, next: sink}
		case fSection:
			sink = &sectionSink{re: f.re, next: sink}
		case fCount:
			sink = &countSink{re: f.re, next: sink}
		case fJSON:
			sink = &jsonTextSink{next: sink}
		}
	}
	return sink
}

// source is what a reply's output is made from: a renderer or a string.
type source struct {
	render func(io.Writer) error
	text   string
}

func (s source) run(w *lineWriter) error {
	var err error
	if s.render != nil {
		err = s.render(w)
	} else {
		_, err = io.WriteString(w, s.text)
	}
	if err != nil {
		return err
	}
	return w.Close()
}

// outSource is a reply's source with whether it replaces a first `| json`.
type outSource struct {
	source
	dataFirst bool
}

// outputSource picks what the filters read: with `| json` first, the
// reply's data (streamed by Reply.StreamJSON, else data indented); else
// its text (streamed by Reply.Stream, else Reply.Text).
func outputSource(r *Reply, data json.RawMessage, fs []filter) (outSource, error) {
	if len(fs) > 0 && fs[0].kind == fJSON {
		if r.StreamJSON != nil {
			return outSource{source{render: r.StreamJSON}, true}, nil
		}
		if len(data) > 0 && string(data) != "null" {
			var buf bytes.Buffer
			if err := json.Indent(&buf, data, "", "  "); err != nil {
				return outSource{}, fmt.Errorf("%% Cannot show data as JSON: %v", err)
			}
			buf.WriteByte('\n')
			return outSource{source{text: buf.String()}, true}, nil
		}
	}
	if r.Stream != nil {
		return outSource{source: source{render: r.Stream}}, nil
	}
	return outSource{source: source{text: r.Text}}, nil
}

// tooLongError says what to do with output over MaxText.
func tooLongError(lines int) string {
	return fmt.Sprintf("%% Output longer than %d MiB (cut after %d lines): narrow it with a filter (| include, | count, | section), "+
		"or use a groupvpn cli of this release, which streams long output", MaxText>>20, lines)
}

// ErrStopped is returned by Client.Stream when the writer refused more
// output (the pager's 'q'): the connection is closed so that the daemon
// stops rendering; the next request dials again.
var ErrStopped = errors.New("output stopped")
