package isakmp

import "fmt"

// nameOf looks a code point up in a read-only name table and falls back to
// "KIND(n)" for values the table does not know, so every typed constant
// prints something an operator can search for.
func nameOf[T ~uint8 | ~uint16 | ~uint32](table map[T]string, v T, kind string) string {
	if s, ok := table[v]; ok {
		return s
	}
	return fmt.Sprintf("%s(%d)", kind, uint64(v))
}
