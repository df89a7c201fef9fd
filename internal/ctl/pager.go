package ctl

import (
	"bytes"
	"io"
	"regexp"
	"strconv"
)

// The interactive shell pages long output like IOS: after a screenful,
// --More--; space shows the next page, return the next line, q (or
// Ctrl-C) stops the output: the connection is closed, so the daemon stops
// rendering the rest. `terminal length N` sets the page (0: no paging);
// without it the page is the terminal's height. Output of `groupvpn cli
// -c` and of scripts is never paged.

// defaultLength is IOS's terminal length.
const defaultLength = 24

const morePrompt = " --More-- "

// pager writes lines to out, asking on in after each page.
type pager struct {
	out    io.Writer
	in     io.Reader
	length int // lines per page; 0: no paging
	lines  int // lines shown since the last question
}

func (p *pager) Write(b []byte) (int, error) {
	if p.length <= 0 {
		return p.out.Write(b)
	}
	n := 0
	for len(b) > 0 {
		if p.lines >= p.length-1 {
			if err := p.more(); err != nil {
				return n, err
			}
		}
		i := bytes.IndexByte(b, '\n')
		seg := b
		if i >= 0 {
			seg = b[:i+1]
		}
		if _, err := p.out.Write(seg); err != nil {
			return n, err
		}
		n += len(seg)
		b = b[len(seg):]
		if i >= 0 {
			p.lines++
		}
	}
	return n, nil
}

// more asks what next: space a page, return a line, q stops.
func (p *pager) more() error {
	io.WriteString(p.out, morePrompt)
	defer io.WriteString(p.out, "\r"+string(bytes.Repeat([]byte{' '}, len(morePrompt)))+"\r")
	var k [1]byte
	for {
		if _, err := p.in.Read(k[:]); err != nil {
			return ErrStopped
		}
		switch k[0] {
		case ' ':
			p.lines = 0
			return nil
		case '\r', '\n':
			p.lines = p.length - 2
			return nil
		case 'q', 'Q', 3, 4: // q, Ctrl-C, Ctrl-D
			return ErrStopped
		}
	}
}

// terminalLength matches `terminal length N` as IOS abbreviates it.
var terminalLength = regexp.MustCompile(`^(?i)\s*te(?:r(?:m(?:i(?:n(?:a(?:l)?)?)?)?)?)?\s+l(?:e(?:n(?:g(?:t(?:h)?)?)?)?)?\s+([0-9]{1,9})\s*$`)

// setLength remembers a `terminal length N` the daemon accepted.
func (sh *Shell) setLength(line string) {
	if m := terminalLength.FindStringSubmatch(line); m != nil {
		sh.length, _ = strconv.Atoi(m[1])
		sh.lengthSet = true
	}
}

// pageLength is the lines per page: `terminal length` if typed, else the
// terminal's height, else IOS's 24.
func (sh *Shell) pageLength(height int) int {
	switch {
	case sh.lengthSet:
		return sh.length
	case height > 1:
		return height
	}
	return defaultLength
}
