//go:build !race

package mnemonic

const raceEnabled = false
