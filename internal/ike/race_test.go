//go:build race

package ike

// raceEnabled: allocation counts differ under the race detector.
const raceEnabled = true
