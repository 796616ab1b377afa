package fleetsim

import "testing"

// TestSpread: a share of the fleet is exactly that share of any run of
// devices from the first, spread evenly, and two phases choose different
// devices.
func TestSpread(t *testing.T) {
	for _, c := range []struct {
		n     int
		pct   float64
		phase int
		want  int
	}{
		{200, 10, 0, 20}, {200, 10, 7, 20}, {10000, 2.5, 0, 250}, {3, 50, 0, 1}, {100, 0, 0, 0}, {100, 100, 3, 100}, {40, 10, 7, 4},
	} {
		got, run, longest := 0, 0, 0
		for i := range c.n {
			if spread(i, c.pct, c.phase) {
				got++
				run++
				longest = max(longest, run)
			} else {
				run = 0
			}
		}
		if got != c.want {
			t.Errorf("%g%% of %d (phase %d): %d chosen, want %d", c.pct, c.n, c.phase, got, c.want)
		}
		if c.pct <= 50 && longest > 1 {
			t.Errorf("%g%% of %d: %d neighbours chosen in a row; want them spread", c.pct, c.n, longest)
		}
	}
	same := 0
	for i := range 1000 {
		if spread(i, 10, 0) && spread(i, 10, 7) {
			same++
		}
	}
	if same == 100 {
		t.Error("phases 0 and 7 choose the same devices")
	}
}
