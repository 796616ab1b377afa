package hugepages

import (
	"maps"
	"runtime/metrics"
	"slices"
	"sync"
	"time"

	"github.com/awsfota/awsfota/clock"
)

// Options tune an Advisor; the zero value is the default.
type Options struct {
	// Fast is how often the heap is looked at while it grows (2 ms): a new
	// 4 MiB mapping is advised before most of it is touched.
	Fast time.Duration
	// Hold is how long the looks stay Fast after the heap last grew (1 s):
	// a growing heap maps a new chunk every few tens of milliseconds.
	Hold time.Duration
	// Slow is how often it is looked at once it has stopped growing
	// (100 ms); the looks slow down from Fast to Slow, doubling.
	Slow time.Duration
	// Settle is how long the heap must not have grown before the advice is
	// withdrawn (5 s).
	Settle time.Duration
	// Clock defaults to the real one.
	Clock clock.Clock
}

func (o Options) withDefaults() Options {
	if o.Fast <= 0 {
		o.Fast = 2 * time.Millisecond
	}
	if o.Hold <= 0 {
		o.Hold = time.Second
	}
	if o.Slow <= 0 {
		o.Slow = 100 * time.Millisecond
	}
	if o.Settle <= 0 {
		o.Settle = 5 * time.Second
	}
	if o.Clock == nil {
		o.Clock = clock.Real()
	}
	return o
}

// Stats say what an Advisor did.
type Stats struct {
	// Active is false where nothing can be done; Reason then says why.
	Active bool
	Reason string
	// Advised is the heap memory under advice now, in bytes; Peak the most
	// it has been.
	Advised, Peak uint64
	// Scans counts the reads of /proc/self/maps; Withdrawn the times the
	// advice was withdrawn after the heap settled.
	Scans, Withdrawn int
	// Err is the last error met (reading the maps, madvise); the Advisor
	// goes on.
	Err error
}

// system is what an Advisor needs of the operating system; the tests give
// it a fake.
type system struct {
	// mapped returns the bytes of memory the Go runtime has mapped.
	mapped func() uint64
	// maps returns the mappings that look like the heap's.
	maps func() ([]Range, error)
	// advise asks for huge pages on r (huge) or withdraws the request.
	advise func(r Range, huge bool) error
}

// Advisor advises huge pages on the heap while it grows. Its methods are
// safe for concurrent use.
type Advisor struct {
	opts Options
	sys  system
	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu    sync.Mutex
	stats Stats
}

// Start starts advising, until Stop. Where huge pages cannot be advised
// (not Linux, the kernel's setting is not "madvise") it returns an Advisor
// that does nothing and whose Stats say why.
func Start(opts Options) *Advisor {
	sys, reason := osSystem()
	return start(opts, sys, reason)
}

func start(opts Options, sys system, reason string) *Advisor {
	a := &Advisor{opts: opts.withDefaults(), sys: sys, stop: make(chan struct{}), done: make(chan struct{})}
	if reason != "" {
		a.stats.Reason = reason
		close(a.done)
		return a
	}
	a.stats.Active = true
	go a.run()
	return a
}

// Stop ends the advising and waits for it; advice already given stays.
func (a *Advisor) Stop() {
	a.once.Do(func() { close(a.stop) })
	<-a.done
}

// Stats returns what the Advisor has done so far.
func (a *Advisor) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

func (a *Advisor) run() {
	defer close(a.done)
	c := a.opts.Clock
	advised := map[Range]bool{}
	last := a.sys.mapped()
	lastGrowth := c.Now()
	interval := a.opts.Fast
	a.scan(advised) // what the heap holds already
	t := c.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C():
		}
		now := a.sys.mapped()
		switch {
		case now > last:
			a.scan(advised)
			lastGrowth = c.Now()
			interval = a.opts.Fast
		case c.Now().Sub(lastGrowth) < a.opts.Hold:
			interval = a.opts.Fast
		case len(advised) > 0 && c.Now().Sub(lastGrowth) >= a.opts.Settle:
			a.withdraw(advised)
			fallthrough
		default:
			interval = min(2*interval, a.opts.Slow)
		}
		last = now
		t.Reset(interval)
	}
}

// scan advises every heap mapping not advised yet. The kernel merges an
// advised mapping with its advised neighbours, so a range seen before may
// come back larger: advising it again is harmless.
func (a *Advisor) scan(advised map[Range]bool) {
	rs, err := a.sys.maps()
	lastErr := err
	if err == nil {
		// Forget ranges that are no longer mappings of their own (merged
		// into a larger one, or unmapped).
		maps.DeleteFunc(advised, func(r Range, _ bool) bool { return !slices.Contains(rs, r) })
	}
	for _, r := range rs {
		if advised[r] {
			continue
		}
		if err := a.sys.advise(r, true); err != nil {
			lastErr = err
			continue
		}
		advised[r] = true
	}
	var total uint64
	for r := range advised {
		total += r.Len()
	}
	a.mu.Lock()
	a.stats.Scans++
	a.stats.Advised = total
	a.stats.Peak = max(a.stats.Peak, total)
	if lastErr != nil {
		a.stats.Err = lastErr
	}
	a.mu.Unlock()
}

// withdraw takes back the advice on every advised range: the heap has
// settled, and huge pages for its later sparse regions would cost memory.
func (a *Advisor) withdraw(advised map[Range]bool) {
	var lastErr error
	for r := range advised {
		if err := a.sys.advise(r, false); err != nil {
			lastErr = err
		}
		delete(advised, r)
	}
	a.mu.Lock()
	a.stats.Advised = 0
	a.stats.Withdrawn++
	if lastErr != nil {
		a.stats.Err = lastErr
	}
	a.mu.Unlock()
}

// mappedBytes is the memory the Go runtime has mapped and uses or may use:
// its growth means new mappings.
func mappedBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
