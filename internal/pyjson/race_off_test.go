//go:build !race

package pyjson

// raceEnabled is true under the race detector, whose sync.Pool drops items
// at random, so allocation counts are meaningless there.
const raceEnabled = false
