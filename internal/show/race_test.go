//go:build race

package show

// raceEnabled: the race detector slows rendering ~10x; timing checks are off.
const raceEnabled = true
