//go:build !race

package show

const raceEnabled = false
