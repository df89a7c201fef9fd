package policy

import (
	"fmt"
	"strings"
)

// MaxErrors is how many errors Parse collects before it stops; the last
// entry of a full list says so.
const MaxErrors = 20

// Error is one problem in a configuration: `file:line: reason`. Line is 0
// for problems with the file as a whole.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// ErrorList is every problem Parse found, in line order; Error joins them
// one per line. Parse and Load return it as their error.
type ErrorList []*Error

func (l ErrorList) Error() string {
	var sb strings.Builder
	for i, e := range l {
		if i > 0 {
			sb.WriteByte('\n')
		}
		sb.WriteString(e.Error())
	}
	return sb.String()
}

// Unwrap lets errors.As find each *Error.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}
