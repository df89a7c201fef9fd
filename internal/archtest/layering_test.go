package archtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/groupvpn/groupvpn"

// roles are the packages that must stay free of I/O.
var roles = []string{module + "/internal/gm", module + "/internal/ks", module + "/internal/coop"}

// forbiddenImports may not be imported by a role itself.
var forbiddenImports = []string{"net", "os", "os/exec", "os/signal", "syscall", "go.etcd.io/bbolt", module + "/internal/store"}

// forbiddenDeps may not be anywhere in a role's dependencies: the store,
// and the packages that own sockets, processes and the event loop.
var forbiddenDeps = []string{
	"go.etcd.io/bbolt", module + "/internal/store", module + "/internal/node", module + "/internal/daemon",
	module + "/internal/mcast", module + "/internal/tmd", module + "/internal/iked", module + "/internal/ikeudp",
	module + "/internal/dataplane", module + "/internal/netinv", module + "/internal/rundir",
}

// ioImports, imported by a package of this module a role depends on,
// make that package able to do I/O behind the role's back.
var ioImports = []string{"os", "syscall", "go.etcd.io/bbolt"}

// clockCalls read the clock or make timers.
var clockCalls = []string{"Now", "Since", "Until", "Sleep", "After", "AfterFunc", "NewTimer", "NewTicker", "Tick"}

// knownExceptions are the violations that exist and are accepted until
// they are removed, with the reason. The test fails on a violation not
// listed here, and on an entry that is no longer a violation (delete it:
// the table only shrinks).
var knownExceptions = map[string]string{
	// Empty: "internal/ks depends on internal/syslog, which imports os" was
	// the last, gone since ks logs through internal/mnemonic.
}

type goPackage struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Imports    []string
	Deps       []string
	Standard   bool
}

// list runs go list -deps -json on pkg: the package and everything it
// depends on.
func list(t *testing.T, pkg string) map[string]*goPackage {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	cmd := exec.Command(goCmd, "list", "-deps", "-json", pkg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps -json %s: %v\n%s", pkg, err, stderr.String())
	}
	pkgs := map[string]*goPackage{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p goPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs[p.ImportPath] = &p
	}
	if pkgs[pkg] == nil {
		t.Fatalf("go list did not list %s", pkg)
	}
	return pkgs
}

func short(path string) string { return strings.TrimPrefix(path, module+"/") }

// clockUses returns, for one Go file, every use of the time package's
// clock and timer functions ("file:line: time.Now") and every go
// statement, whatever name the file imports time under.
func clockUses(fset *token.FileSet, f *ast.File) []string {
	var timeName string
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == "time" {
			timeName = "time"
			if imp.Name != nil {
				timeName = imp.Name.Name
			}
		}
	}
	var found []string
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SelectorExpr:
			if x, ok := n.X.(*ast.Ident); ok && timeName != "" && x.Name == timeName && slices.Contains(clockCalls, n.Sel.Name) {
				p := fset.Position(n.Pos())
				found = append(found, fmt.Sprintf("%s:%d: time.%s", filepath.Base(p.Filename), p.Line, n.Sel.Name))
			}
		case *ast.GoStmt:
			p := fset.Position(n.Pos())
			found = append(found, fmt.Sprintf("%s:%d: go statement", filepath.Base(p.Filename), p.Line))
		}
		return true
	})
	return found
}

// violations lists how the roles break the layering, one line each.
func violations(t *testing.T) []string {
	var v []string
	for _, role := range roles {
		pkgs := list(t, role)
		me := pkgs[role]
		for _, imp := range me.Imports {
			if slices.Contains(forbiddenImports, imp) || strings.HasPrefix(imp, "go.etcd.io/bbolt/") {
				v = append(v, fmt.Sprintf("%s imports %s", short(role), short(imp)))
			}
		}
		for path, p := range pkgs {
			if path == role {
				continue
			}
			if slices.Contains(forbiddenDeps, path) {
				v = append(v, fmt.Sprintf("%s depends on %s", short(role), short(path)))
			}
			if strings.HasPrefix(path, module+"/") {
				for _, imp := range p.Imports {
					if slices.Contains(ioImports, imp) {
						v = append(v, fmt.Sprintf("%s depends on %s, which imports %s", short(role), short(path), imp))
					}
				}
			}
		}
		fset := token.NewFileSet()
		for _, name := range me.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(me.Dir, name), nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			for _, use := range clockUses(fset, f) {
				v = append(v, fmt.Sprintf("%s: %s", short(role), use))
			}
		}
	}
	slices.Sort(v)
	return slices.Compact(v)
}

// TestRolesAreFreeOfIO keeps the group member and key server roles
// sans-IO: see the package documentation.
//
// proves: D1 (issue 15: the roles are free of I/O)
func TestRolesAreFreeOfIO(t *testing.T) {
	found := violations(t)
	for _, v := range found {
		if _, ok := knownExceptions[v]; ok {
			t.Logf("known exception: %s", v)
			continue
		}
		hint := ""
		if strings.Contains(v, "internal/syslog") {
			hint = " (log %GDOI lines with internal/mnemonic: the same Log and severities, no I/O)"
		}
		t.Errorf("layering broken: %s%s", v, hint)
	}
	for e := range knownExceptions {
		if !slices.Contains(found, e) {
			t.Errorf("known exception no longer needed (delete it from knownExceptions): %s", e)
		}
	}
}

// TestClockUsesFindsThem checks the AST check itself on a file that reads
// the clock under another name, arms a timer and starts a goroutine, and
// on one that only handles time values.
func TestClockUsesFindsThem(t *testing.T) {
	src := `package p

import clock "time"

func f(now clock.Time) clock.Duration {
	t := clock.NewTimer(clock.Second)
	go func() { <-t.C }()
	return clock.Since(now) + now.Sub(clock.Now())
}
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "p.go", src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"p.go:6: time.NewTimer", "p.go:7: go statement", "p.go:8: time.Since", "p.go:8: time.Now"}
	if got := clockUses(fset, f); !slices.Equal(got, want) {
		t.Errorf("clockUses = %q, want %q", got, want)
	}
	clean := `package p

import "time"

func f(now time.Time, d time.Duration) time.Time { return now.Add(d).Truncate(time.Second) }
`
	f, err = parser.ParseFile(fset, "q.go", clean, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	if got := clockUses(fset, f); len(got) != 0 {
		t.Errorf("clockUses of a file with time values only = %q", got)
	}
}
