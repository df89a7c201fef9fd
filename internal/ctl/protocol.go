package ctl

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Version is the control protocol version this package speaks. A request
// with any other "v" is answered with an error naming both versions.
const Version = 1

// MaxRequest is the largest request line (JSON and its newline) a server
// reads; a longer line is answered with an error and discarded.
const MaxRequest = 64 << 10

// MaxResponse is the largest response line a Client accepts.
const MaxResponse = 16 << 20

// Built-in requests; they start with '?' so no command can collide.
const (
	CmdComplete = "?complete" // completion candidates for "line"
	CmdHelp     = "?help"     // every command with its help
	CmdHostname = "?hostname" // the host name for the prompt
)

// WireRequest is one request line on the control socket.
type WireRequest struct {
	V      int    `json:"v"`
	ID     uint64 `json:"id"`
	Cmd    string `json:"cmd"`
	Line   string `json:"line,omitempty"`   // ?complete: the line typed so far
	Input  string `json:"input,omitempty"`  // text the command reads (Request.Input)
	Answer string `json:"answer,omitempty"` // the answer to the prompt identified by Token
	Token  string `json:"token,omitempty"`  // continuation token from a prompt reply
	// Stream: the client takes a long reply in chunks (issue 18): the
	// server may answer with any number of lines {"more":true,"text":...}
	// before the reply's last line. A server that predates it ignores the
	// field and answers with one line, which is also a last line.
	Stream bool `json:"stream,omitempty"`
}

// WireResponse is one response line on the control socket.
type WireResponse struct {
	V      int             `json:"v"`
	ID     uint64          `json:"id"`
	OK     bool            `json:"ok"`
	Text   string          `json:"text,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
	Error  string          `json:"error,omitempty"`
	Pos    *int            `json:"pos,omitempty"`    // byte offset of the '^' marker in cmd
	Prompt string          `json:"prompt,omitempty"` // the command asks this; answer with Token
	Token  string          `json:"token,omitempty"`
	// More marks a chunk of a streamed reply: Text is the next part of
	// the output (whole lines), and another line of the same ID follows.
	// Only sent to a request with Stream set.
	More bool `json:"more,omitempty"`
	// Truncated: the output was longer than the text collected (MaxText)
	// and was cut; Error says so.
	Truncated bool `json:"truncated,omitempty"`
}

// Completion is the data of a ?complete reply.
type Completion struct {
	Candidates []Candidate `json:"candidates"`
	Partial    string      `json:"partial"` // the word being completed ("" after a space)
	Error      string      `json:"error,omitempty"`
}

// HelpEntry is one element of the data of a ?help reply.
type HelpEntry struct {
	Command string `json:"command"`
	Help    string `json:"help"`
}

// Param is one placeholder of a matched command, in command-line order.
type Param struct {
	Name  string `json:"name"`  // the Args key
	Type  string `json:"type"`  // WORD, NUMBER, A.B.C.D, X:X::X or LINE
	Value string `json:"value"` // as typed (LINE: the rest of the line)
}

// PromptError is returned by Request.Ask when the command needs an answer
// it does not have yet. A handler returns it (or any error wrapping it) and
// the server turns it into a prompt reply.
type PromptError struct {
	Prompt string
}

func (e *PromptError) Error() string {
	return fmt.Sprintf("confirmation required: %s", strings.TrimSpace(lastLine(e.Prompt)))
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
