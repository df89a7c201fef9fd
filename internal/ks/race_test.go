//go:build race

package ks

// raceEnabled: allocation counts differ under the race detector.
const raceEnabled = true
