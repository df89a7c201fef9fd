// Package doccheck holds tests that keep the repository's documents true
// to its code; it has no code of its own.
//
// requirements_test.go: every requirement ID the code cites, as "SPEC X"
// in a comment or a document or as "// proves: X" in a test, is one of
// docs/requirements.md, and the "Proved by" line of each requirement there
// lists only tests whose proves: comments name it (regenerate with
// `go test ./internal/doccheck -run Requirements -update`). A proof not
// yet listed there, and a requirement no test proves (a gap, marked in
// the document), are logged, not failures.
package doccheck
