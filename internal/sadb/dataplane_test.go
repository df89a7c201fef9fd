package sadb

import (
	"reflect"
	"strings"
	"testing"
)

// saOnly has the SA and policy operations and nothing else: it compiles as
// a Dataplane only while the interface asks for no more (no KEK method).
type saOnly struct{}

func (saOnly) InstallTEK(TEK) error            { return nil }
func (saOnly) DeleteTEK(string, uint32) error  { return nil }
func (saOnly) TEKs() []TEK                     { return nil }
func (saOnly) SetFailMode(string, FailMode)    {}
func (saOnly) FailMode(string) FailMode        { return FailOpen }
func (saOnly) SetPolicy(string, []PolicyEntry) {}
func (saOnly) Policy(string) []PolicyEntry     { return nil }

var (
	_ Dataplane   = saOnly{}
	_ PolicyStore = saOnly{}
)

// proves: D1 (issue 15: the data-plane interface keeps SA and policy operations only)
// — no method of Dataplane or PolicyStore names a KEK: the KEK is the GM
// role's (gm.KEKStore) and the store's, never a data plane's.
func TestDataplaneHasNoKEK(t *testing.T) {
	for _, it := range []reflect.Type{reflect.TypeFor[Dataplane](), reflect.TypeFor[PolicyStore]()} {
		if it.NumMethod() == 0 {
			t.Fatalf("%s has no methods", it)
		}
		for i := range it.NumMethod() {
			if m := it.Method(i).Name; strings.Contains(strings.ToUpper(m), "KEK") {
				t.Errorf("%s.%s: a KEK operation in the data-plane interface", it, m)
			}
		}
	}
	// Memory still keeps KEKs for the GM role (and tmd): behaviour unchanged.
	m := NewMemory()
	if err := m.InstallKEK(KEK{Group: "G"}); err != nil || len(m.KEKs()) != 1 {
		t.Fatalf("Memory lost its KEK store: %v %v", err, m.KEKs())
	}
}
