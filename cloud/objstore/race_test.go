//go:build race

package objstore

// raceEnabled: the tests run under the race detector.
const raceEnabled = true
