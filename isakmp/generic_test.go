package isakmp

import (
	"bytes"
	"fmt"
	"testing"
)

// checkSplitGenericOf fails unless the in-place read of a generic payload
// header answers as the reader does: the same next type and body, or the
// same error text.
func checkSplitGenericOf(t *testing.T, typ PayloadType, b []byte) {
	t.Helper()
	wn, wb, werr := splitGeneric(typ.String(), b)
	gn, gb, gerr := splitGenericOf(typ, b)
	if fmt.Sprint(werr) != fmt.Sprint(gerr) || wn != gn || !bytes.Equal(wb, gb) || (wb == nil) != (gb == nil) {
		t.Fatalf("% x as %s: splitGenericOf (%s, % x, %v), splitGeneric (%s, % x, %v)", b, typ, gn, gb, gerr, wn, wb, werr)
	}
}

// proves: V1 (the payload chain is read as before: a well-formed generic
// header is read in place without naming its type, anything else goes
// through the reader and fails with the same error)
func TestSplitGenericOfIsSplitGeneric(t *testing.T) {
	for _, b := range [][]byte{
		nil, {}, {1}, {1, 0, 0}, {1, 0, 0, 3}, {1, 0, 0, 4}, {1, 0, 0, 5}, {1, 0, 0, 5, 9},
		{1, 1, 0, 4}, {0xff, 0, 0xff, 0xff, 1, 2}, {13, 0, 0, 6, 0xaa, 0xbb, 0xcc},
	} {
		for _, typ := range []PayloadType{PayloadSA, PayloadNonce, PayloadType(0xee)} {
			checkSplitGenericOf(t, typ, b)
		}
	}
}

func FuzzSplitGenericOf(f *testing.F) {
	f.Add(uint8(PayloadKE), []byte{10, 0, 0, 8, 1, 2, 3, 4, 5})
	f.Add(uint8(PayloadNonce), []byte{0, 1, 0, 4})
	f.Fuzz(func(t *testing.T, typ uint8, b []byte) {
		checkSplitGenericOf(t, PayloadType(typ), b)
	})
}
