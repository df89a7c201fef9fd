//go:build race

package gdoi

// raceEnabled: allocation counts differ under the race detector.
const raceEnabled = true
