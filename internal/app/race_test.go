//go:build race

package app

// raceEnabled: the race detector allocates where the compiler would not;
// allocation counts are checked without it.
const raceEnabled = true
