package src

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// Verbs of the protocol (SPEC D1).
const (
	VerbStart   = "startsrc"
	VerbStop    = "stopsrc"
	VerbRefresh = "refresh"
	VerbLssrc   = "lssrc"
)

// Request is what a verb sends srcmstr: one JSON object per connection.
// Exactly one of Subsystem (-s), Group (-g) and All (-a, lssrc only).
type Request struct {
	Verb      string `json:"verb"`
	Subsystem string `json:"subsystem,omitempty"`
	Group     string `json:"group,omitempty"`
	All       bool   `json:"all,omitempty"`
	Long      bool   `json:"long,omitempty"` // lssrc -l
}

// Response is srcmstr's answer: what the verb prints and its exit status
// (0 done, 1 refused or failed, 2 usage).
type Response struct {
	Stdout string `json:"stdout,omitempty"`
	Stderr string `json:"stderr,omitempty"`
	Exit   int    `json:"exit"`
}

// ErrNotRunning is returned by Call when no srcmstr answers.
var ErrNotRunning = errors.New("srcmstr is not running")

// Call sends req to the srcmstr of rundir dir and returns its answer. It
// waits as long as srcmstr takes (a group start waits for each member).
func Call(dir string, req Request) (Response, error) {
	sock := SocketPath(dir)
	c, err := net.Dial("unix", sock)
	if err != nil {
		return Response{}, fmt.Errorf("%w (no socket at %s): start it with groupvpn srcmstr", ErrNotRunning, sock)
	}
	defer c.Close()
	if err := json.NewEncoder(c).Encode(req); err != nil {
		// A srcmstr at its connection limit answers before it closes.
		var resp Response
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if json.NewDecoder(c).Decode(&resp) == nil && resp.Stderr != "" {
			return resp, nil
		}
		return Response{}, fmt.Errorf("srcmstr at %s: send: %w", sock, err)
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return Response{}, fmt.Errorf("srcmstr at %s: no answer: %w", sock, err)
	}
	return resp, nil
}
