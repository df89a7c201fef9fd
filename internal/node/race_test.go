//go:build race

package node

// raceEnabled: the race detector slows the loop tenfold; the 100,000-member
// sync is left to runs without it (the 10,000 one covers the same code).
const raceEnabled = true
