// Package archtest holds tests that keep the architecture of
// docs/architecture.md true; it has no code of its own.
//
// layering_test.go: the group member and key server roles (internal/gm,
// internal/ks) and the COOP election (internal/coop) are sans-IO (issue 15): they import no net (net/netip is a
// value type), no os or syscall, not the bbolt store; they never read the
// clock or make timers (time.Now, time.NewTimer, time.AfterFunc, ...) and
// start no goroutine. Their clock is the now they are given, their timers
// are values they return.
package archtest
