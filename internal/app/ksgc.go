package app

import "runtime/debug"

// ksGOGC is the key-server daemons' default GOGC (isakmpd, ikev2d). A key
// server's collector work grows with what it allocates per registration,
// and at Go's default of 100 the collector and its write barriers were
// the part of a registration's CPU that grew most from 10,000 to 100,000
// members (perf, issue 18: 3.3% -> 5.6% of the KS's CPU between the
// first and last 40,000 of a storm). At 200 the heap grows to 3 times the
// live one between collections instead of twice: a storm's resident
// memory is higher while it lasts, and the daemon returns the free heap
// once it is over (internal/memtrim), so memory per member once settled
// is unchanged. The GOGC environment variable wins.
const ksGOGC = 200

// setKSGC sets the process's GOGC to ksGOGC unless the GOGC environment
// variable is set.
func setKSGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(ksGOGC)
	}
}
