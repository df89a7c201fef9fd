package doccheck

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the Proved by lines of docs/requirements.md from the tests' proves: comments")

// root is the repository's top directory, seen from this package.
const root = "../.."

const catalogue = "docs/requirements.md"

// idRE is a requirement ID: an area letter and a number (S2, O4, T1).
var idRE = regexp.MustCompile(`^[A-Z][0-9]{1,2}$`)

// rangeRE is a range of IDs of one area: P2-P6.
var rangeRE = regexp.MustCompile(`^([A-Z])([0-9]{1,2})[-–]([A-Z]?)([0-9]{1,2})$`)

// specRE finds a citation "SPEC X", "SPEC X, Y", "SPEC P2-P6", "SPEC R2 and
// R4" in text whose comment markers and line breaks are spaces.
var specRE = regexp.MustCompile(`\bSPEC((?:[\s,]+(?:and\s+)?[A-Z][0-9]{1,2}(?:[-–][A-Z]?[0-9]{1,2})?\b)+)`)

// citation is one place that names a requirement.
type citation struct {
	id    string
	where string // file:line
}

// proof is a test whose proves: comment names a requirement.
type proof struct {
	pkg  string // directory from the repository's top: internal/ike
	test string // the function holding or following the comment
}

// expand turns a token (S2, P2-P6) into IDs; nil if it is not one.
func expand(tok string) []string {
	if idRE.MatchString(tok) {
		return []string{tok}
	}
	m := rangeRE.FindStringSubmatch(tok)
	if m == nil || (m[3] != "" && m[3] != m[1]) {
		return nil
	}
	from, _ := strconv.Atoi(m[2])
	to, _ := strconv.Atoi(m[4])
	if to < from || to-from > 20 {
		return nil
	}
	var ids []string
	for i := from; i <= to; i++ {
		ids = append(ids, m[1]+strconv.Itoa(i))
	}
	return ids
}

// provesIDs reads the head of a proves: line, its parenthesized notes
// left out, up to its dash: the IDs it proves ("proves: O4, T1 (issue 11)
// — text", "proves: P1 (reload), D4 (logging)"), and those it cites as
// groundwork only ("proves: S2, groundwork for R3").
func provesIDs(line string) (proved, groundwork []string) {
	var b strings.Builder
	depth := 0
	for _, r := range line {
		switch {
		case r == '(':
			depth++
		case r == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	head := b.String()
	for _, stop := range []string{"—", "–", " - ", ";", ":"} {
		if i := strings.Index(head, stop); i >= 0 {
			head = head[:i]
		}
	}
	inGroundwork := false
	for _, tok := range strings.FieldsFunc(head, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		if strings.EqualFold(tok, "groundwork") {
			inGroundwork = true
			continue
		}
		ids := expand(tok)
		if inGroundwork {
			groundwork = append(groundwork, ids...)
		} else {
			proved = append(proved, ids...)
		}
	}
	return proved, groundwork
}

// specIDs returns the IDs of every "SPEC ..." citation in text, with the
// offset of each.
func specIDs(text string) (ids []string, offsets []int) {
	for _, m := range specRE.FindAllStringSubmatchIndex(text, -1) {
		list := text[m[2]:m[3]]
		for _, tok := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
			if tok == "and" {
				continue
			}
			for _, id := range expand(tok) {
				ids = append(ids, id)
				offsets = append(offsets, m[0])
			}
		}
	}
	return ids, offsets
}

// scan walks the repository: the tests' proves: comments and every SPEC
// citation in Go files and documents.
func scan(t *testing.T) (proofs map[string][]proof, cites []citation) {
	t.Helper()
	proofs = map[string][]proof{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			switch d.Name() {
			case ".git", "bin", "testdata", "vendor":
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case strings.HasSuffix(path, ".go"):
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
			if err != nil {
				return err
			}
			for _, cg := range f.Comments {
				// SPEC citations, across the comment's line breaks.
				text := cg.Text()
				ids, offs := specIDs(strings.ReplaceAll(text, "\n", " "))
				line := fset.Position(cg.Pos()).Line
				for i, id := range ids {
					cites = append(cites, citation{id, fmt.Sprintf("%s:%d", rel, line+strings.Count(text[:min(offs[i], len(text))], "\n"))})
				}
				if !strings.HasSuffix(path, "_test.go") {
					continue
				}
				for _, c := range cg.List {
					// A proves: line starts its comment line: "// proves: S2 ...".
					rest, ok := strings.CutPrefix(strings.TrimLeft(strings.TrimPrefix(c.Text, "//"), " \t"), "proves:")
					if !ok {
						continue
					}
					where := fmt.Sprintf("%s:%d", rel, fset.Position(c.Pos()).Line)
					proved, groundwork := provesIDs(rest)
					for _, id := range append(slices.Clone(proved), groundwork...) {
						cites = append(cites, citation{id, where})
					}
					p := proof{pkg: filepath.ToSlash(filepath.Dir(rel)), test: holder(f, c.Pos(), rel)}
					for _, id := range proved {
						proofs[id] = append(proofs[id], p)
					}
				}
			}
		case strings.HasSuffix(path, ".md") || strings.HasSuffix(path, ".example"):
			if rel == catalogue {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			text := string(b)
			ids, offs := specIDs(text)
			for i, id := range ids {
				cites = append(cites, citation{id, fmt.Sprintf("%s:%d", rel, 1+strings.Count(text[:offs[i]], "\n"))})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return proofs, cites
}

// holder names the function a proves: comment belongs to: the one it is
// in, else the first one declared after it (its doc comment).
func holder(f *ast.File, pos token.Pos, file string) string {
	var next *ast.FuncDecl
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok {
			continue
		}
		if fd.Pos() <= pos && pos < fd.End() {
			return fd.Name.Name
		}
		if fd.Pos() > pos && (next == nil || fd.Pos() < next.Pos()) {
			next = fd
		}
	}
	if next != nil {
		return next.Name.Name
	}
	return filepath.Base(file)
}

// entry is one requirement of the catalogue.
type entry struct {
	id        string
	provedRow int // index of its "Proved by:" line in the document's lines
}

const provedPrefix = "  Proved by: "

var entryRE = regexp.MustCompile(`^- \*\*([A-Z][0-9]{1,2})\*\* \S`)

// readCatalogue parses docs/requirements.md: "- **ID** text" lines, each
// followed by its "  Proved by: ..." line.
func readCatalogue(t *testing.T) (lines []string, entries []entry) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, catalogue))
	if err != nil {
		t.Fatal(err)
	}
	lines = strings.Split(string(b), "\n")
	seen := map[string]bool{}
	for i, l := range lines {
		m := entryRE.FindStringSubmatch(l)
		if m == nil {
			if strings.HasPrefix(l, "- **") {
				t.Errorf("%s:%d: a requirement line is `- **ID** text`: %q", catalogue, i+1, l)
			}
			continue
		}
		id := m[1]
		if seen[id] {
			t.Errorf("%s:%d: %s listed twice", catalogue, i+1, id)
		}
		seen[id] = true
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], provedPrefix) {
			t.Errorf("%s:%d: %s has no %q line after it", catalogue, i+1, id, strings.TrimSpace(provedPrefix))
			continue
		}
		entries = append(entries, entry{id: id, provedRow: i + 1})
	}
	if len(entries) == 0 {
		t.Fatalf("%s lists no requirement", catalogue)
	}
	return lines, entries
}

// provedLine is the generated "Proved by" line of a requirement.
func provedLine(ps []proof) string {
	if len(ps) == 0 {
		return provedPrefix + "no test yet (gap)."
	}
	byPkg := map[string][]string{}
	for _, p := range ps {
		if !slices.Contains(byPkg[p.pkg], p.test) {
			byPkg[p.pkg] = append(byPkg[p.pkg], p.test)
		}
	}
	pkgs := make([]string, 0, len(byPkg))
	for p := range byPkg {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	parts := make([]string, 0, len(pkgs))
	for _, p := range pkgs {
		tests := byPkg[p]
		sort.Strings(tests)
		parts = append(parts, p+" "+strings.Join(tests, ", "))
	}
	return provedPrefix + strings.Join(parts, "; ") + "."
}

// TestRequirementsCatalogue keeps docs/requirements.md the catalogue of
// every requirement the repository cites: a "SPEC X" in a comment or a
// document, or a test's "// proves: X", must name an ID listed there, and
// each ID's "Proved by" line may list only tests whose proves: comments
// name it (-update rewrites those lines from the tests). A proof not yet
// listed, and an ID no test proves (a gap, marked in the document), are
// logged, not failures.
//
// proves: groundwork for every ID (issue 15: every requirement citation
// resolves inside the repository)
func TestRequirementsCatalogue(t *testing.T) {
	proofs, cites := scan(t)
	lines, entries := readCatalogue(t)
	known := map[string]bool{}
	for _, e := range entries {
		known[e.id] = true
	}
	for _, c := range cites {
		if !known[c.id] {
			t.Errorf("%s cites %s, which %s does not list", c.where, c.id, catalogue)
		}
	}
	var stale, gaps, unlisted []string
	for _, e := range entries {
		want := provedLine(proofs[e.id])
		if lines[e.provedRow] != want {
			stale = append(stale, e.id)
			// A test listed that no longer proves the ID is a false
			// claim: a failure. Tests are matched by name, so a test
			// moved to another package (issue 15's refactor) is not one.
			proving := map[string]bool{}
			for _, p := range proofs[e.id] {
				proving[p.test] = true
			}
			listed := listedTests(lines[e.provedRow])
			for _, name := range listed {
				if !proving[name] {
					t.Errorf("%s:%d: %s lists %s, which has no proves: comment naming %s (any more); run `go test ./internal/doccheck -run Requirements -update`", catalogue, e.provedRow+1, e.id, name, e.id)
				}
			}
			for name := range proving {
				if !slices.Contains(listed, name) {
					unlisted = append(unlisted, e.id+":"+name)
				}
			}
			lines[e.provedRow] = want
		}
		if len(proofs[e.id]) == 0 {
			gaps = append(gaps, e.id)
		}
	}
	if len(gaps) > 0 {
		t.Logf("requirements no test proves yet (gaps): %s", strings.Join(gaps, " "))
	}
	if len(stale) == 0 {
		return
	}
	if *update {
		if err := os.WriteFile(filepath.Join(root, catalogue), []byte(strings.Join(lines, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the Proved by lines of %s", strings.Join(stale, " "))
		return
	}
	// New proofs, and proofs moved between packages, are not yet in the
	// document: said, not failed, so that a test landing with a proves:
	// comment never breaks the build for a line of documentation.
	sort.Strings(unlisted)
	t.Logf("%s is behind the tests (Proved by lines of %s; not yet listed: %s); run `go test ./internal/doccheck -run Requirements -update`", catalogue, strings.Join(stale, " "), strings.Join(unlisted, " "))
}

// listedTests returns the test names of a "Proved by" line: "pkg A, B;
// pkg2 C." gives A, B, C.
func listedTests(line string) []string {
	line = strings.TrimSuffix(strings.TrimPrefix(line, provedPrefix), ".")
	if strings.HasSuffix(line, "(gap)") {
		return nil
	}
	var names []string
	for _, part := range strings.Split(line, ";") {
		fields := strings.Fields(strings.ReplaceAll(part, ",", " "))
		if len(fields) > 1 {
			names = append(names, fields[1:]...) // fields[0] is the package
		}
	}
	return names
}

// TestRequirementsMatchSpec checks, where the project's shared SPEC.md is
// beside the repository (../shared, as on the developers' machines and in
// CI), that the catalogue lists exactly its IDs.
//
// proves: groundwork (issue 15: the catalogue is complete)
func TestRequirementsMatchSpec(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "..", "shared", "SPEC.md"))
	if err != nil {
		t.Skipf("no ../shared/SPEC.md beside the repository: %v", err)
	}
	specID := regexp.MustCompile(`(?m)^- ([A-Z][0-9]{1,2}) `)
	want := map[string]bool{}
	for _, m := range specID.FindAllStringSubmatch(string(b), -1) {
		want[m[1]] = true
	}
	_, entries := readCatalogue(t)
	got := map[string]bool{}
	for _, e := range entries {
		got[e.id] = true
		if !want[e.id] {
			t.Errorf("%s lists %s, which SPEC.md does not define", catalogue, e.id)
		}
	}
	for id := range want {
		if !got[id] {
			t.Errorf("%s does not list %s of SPEC.md", catalogue, id)
		}
	}
}

// TestProvesParsing pins how a proves: line and a SPEC citation are read.
func TestProvesParsing(t *testing.T) {
	for _, c := range []struct {
		line           string
		proved, ground []string
	}{
		{" O4, T1 (issue 11 item 10) — a rekey", []string{"O4", "T1"}, nil},
		{" D2 D5 D6 (the verbs)", []string{"D2", "D5", "D6"}, nil},
		{" S2, groundwork for R3", []string{"S2"}, []string{"R3"}},
		{" groundwork for V4, T4", nil, []string{"V4", "T4"}},
		{" issue 12 (Benchmarks: ...)", nil, nil},
		{" R1, R2 in real time", []string{"R1", "R2"}, nil},
		{" D1 (issue 15: the roles are free of I/O)", []string{"D1"}, nil},
		{" P1 (reload), D4 (logging reopened; issue 11 item 6) — SIGHUP", []string{"P1", "D4"}, nil},
		{" O3 (issue 14 item 7: every drop counter (show ...) is scraped), S5", []string{"O3", "S5"}, nil},
		{" O2, O3 (issue 14 item 6: clear crypto gdoi ks members, crypto", []string{"O2", "O3"}, nil},
	} {
		p, g := provesIDs(c.line)
		if !slices.Equal(p, c.proved) || !slices.Equal(g, c.ground) {
			t.Errorf("provesIDs(%q) = %v, %v; want %v, %v", c.line, p, g, c.proved, c.ground)
		}
	}
	for _, c := range []struct {
		text string
		ids  []string
	}{
		{"the policy-replace rekey (SPEC P2-P6). Use", []string{"P2", "P3", "P4", "P5", "P6"}},
		{"(SPEC R2, R4).", []string{"R2", "R4"}},
		{"(SPEC D1, D2, D5, D6; seed 000)", []string{"D1", "D2", "D5", "D6"}},
		{"SPEC T1: \"GMs join the group\"", []string{"T1"}},
		{"(SPEC   D4, D5 and D6)", []string{"D4", "D5", "D6"}},
		{"SPEC.md", nil},
	} {
		if ids, _ := specIDs(c.text); !slices.Equal(ids, c.ids) {
			t.Errorf("specIDs(%q) = %v, want %v", c.text, ids, c.ids)
		}
	}
}
