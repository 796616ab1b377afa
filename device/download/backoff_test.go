package download

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	const s = time.Second
	tests := []struct {
		failures int
		min, max time.Duration
		r        float64
		want     time.Duration
	}{
		{0, s, time.Minute, 0.5, s / 2},
		{1, s, time.Minute, 0.5, s / 2},
		{2, s, time.Minute, 0.5, s},
		{6, s, time.Minute, 0.5, 16 * s},
		{7, s, time.Minute, 0.5, 30 * s}, // 64s capped at 60s
		{1 << 30, s, time.Minute, 0.999, 59940 * time.Millisecond},
		{3, s, time.Minute, 0, 0},
		{100, time.Duration(1) << 62, time.Duration(1<<63 - 1), 0.5, time.Duration(1<<63-1) / 2},
	}
	for _, tt := range tests {
		got := backoff(tt.failures, tt.min, tt.max, tt.r)
		if d := got - tt.want; d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("backoff(%d, %v, %v, %v) = %v, want %v", tt.failures, tt.min, tt.max, tt.r, got, tt.want)
		}
	}
}
