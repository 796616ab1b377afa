package jobsvc

import (
	"math"
	"sync"
	"time"
)

// limiter is a token bucket per thing: each thing may make rate requests a
// second, in bursts of up to burst. A nil limiter allows everything.
type limiter struct {
	rate  float64
	burst float64

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// maxLimiterThings bounds the limiter's memory: when more things than this
// have buckets, the full ones (idle long enough to be full again) are
// dropped, which changes nothing for them.
const maxLimiterThings = 100_000

func newLimiter(rate float64, burst int) *limiter {
	if rate <= 0 || math.IsNaN(rate) || math.IsInf(rate, 0) {
		return nil
	}
	b := float64(burst)
	if burst <= 0 {
		b = math.Max(1, math.Floor(rate))
	}
	return &limiter{rate: rate, burst: b, buckets: map[string]*bucket{}}
}

// allow takes a token from thing's bucket at now; false when it is empty.
func (l *limiter) allow(thing string, now time.Time) bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[thing]
	if !ok {
		if len(l.buckets) >= maxLimiterThings {
			l.prune(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[thing] = b
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = math.Min(l.burst, b.tokens+d.Seconds()*l.rate)
		b.at = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (l *limiter) prune(now time.Time) {
	for th, b := range l.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
			delete(l.buckets, th)
		}
	}
}
