//go:build race

package store

// raceEnabled: allocation counts differ under the race detector.
const raceEnabled = true
