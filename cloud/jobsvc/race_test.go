//go:build race

package jobsvc

// raceEnabled: the tests run under the race detector.
const raceEnabled = true
