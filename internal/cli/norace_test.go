//go:build !race

package cli

// raceEnabled: the tests run under the race detector.
//
//lint:ignore U1000 used by the browser-tagged tests
const raceEnabled = false
