package ikev2

import (
	"errors"
	"fmt"
)

// ErrShort reports that a structure is cut off: a length or count promised
// more octets than the input holds.
var ErrShort = errors.New("truncated")

// ErrMalformed reports a structure whose fields contradict each other or the
// RFC (a length shorter than its fixed part, a count over a bound, ...).
var ErrMalformed = errors.New("malformed")

// ParseError locates a parse failure: the structure being parsed, the octet
// offset inside that structure's input and the reason. It wraps ErrShort or
// ErrMalformed (or ErrVersion) so callers can branch with errors.Is.
type ParseError struct {
	What   string // e.g. "SA payload: proposal 1: transform 3"
	Offset int    // offset within the input given to that parser
	Err    error  // ErrShort, ErrMalformed or ErrVersion, possibly wrapped with detail
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("ikev2: %s at offset %d: %v", e.What, e.Offset, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

func errShort(what string, off, need, have int) error {
	return &ParseError{What: what, Offset: off, Err: fmt.Errorf("%w: need %d octets, have %d", ErrShort, need, have)}
}

func errMalformed(what string, off int, format string, args ...any) error {
	return &ParseError{What: what, Offset: off, Err: fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))}
}

// wrapAt re-bases an error from a nested parser so the offset names the
// position within the outer structure.
func wrapAt(what string, base int, err error) error {
	var pe *ParseError
	if errors.As(err, &pe) {
		return &ParseError{What: what + ": " + pe.What, Offset: base + pe.Offset, Err: pe.Err}
	}
	return &ParseError{What: what, Offset: base, Err: err}
}
