package isakmp

import (
	"errors"
	"fmt"
)

// ErrShort reports that a structure is cut off: a length or count promised
// more octets than the input holds.
var ErrShort = errors.New("truncated")

// ErrMalformed reports a structure whose fields contradict each other or the
// RFC (a length shorter than its fixed part, a non-zero RESERVED field, ...).
var ErrMalformed = errors.New("malformed")

// ParseError locates a parse failure: the structure being parsed, the octet
// offset inside that structure's input and the reason. It wraps ErrShort or
// ErrMalformed so callers can branch with errors.Is; the ISAKMP notification
// to send back for such errors is PAYLOAD-MALFORMED (RFC 2408 §3.14.1).
type ParseError struct {
	What   string // e.g. "SA KEK payload"
	Offset int    // offset within the input given to that parser
	Err    error  // ErrShort or ErrMalformed, possibly wrapped with detail
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("isakmp: %s at offset %d: %v", e.What, e.Offset, e.Err)
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
