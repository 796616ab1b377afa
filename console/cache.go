package console

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/awsfota/awsfota/operator"
)

// terminal reports whether an execution status is final.
func terminal(status string) bool {
	switch status {
	case "QUEUED", "IN_PROGRESS", "":
		return false
	}
	return true
}

// execCache keeps executions with their statusDetails so that a page shows
// them without reading each again: a terminal one never changes (a retry is
// a new execution number), and while a feed is followed every change of the
// others arrives through it ("live" entries, valid as long as the feed's
// subscription is unbroken).
type execCache struct {
	mu    sync.Mutex
	m     map[string]cached
	epoch uint64 // the feed subscription's number; 0 while none is up
}

type cached struct {
	e     operator.Execution
	epoch uint64 // the subscription it came with (0: read, not fed)
}

// maxCached bounds the cache; past it, it starts over.
const maxCached = 200_000

func newExecCache() *execCache { return &execCache{m: map[string]cached{}} }

func execKey(job, thing string) string { return job + "\x00" + thing }

// get returns what is known of the execution a list summarised (thing,
// status, execution number), when it is still true.
func (c *execCache) get(job string, sum operator.Execution) (operator.Execution, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	x, ok := c.m[execKey(job, sum.Thing)]
	if !ok {
		return sum, false
	}
	live := c.epoch != 0 && x.epoch == c.epoch
	switch {
	case live && x.e.ExecutionNum >= sum.ExecutionNum:
		return x.e, true // the feed has told every change since
	case x.e.ExecutionNum == sum.ExecutionNum && x.e.Status == sum.Status && terminal(sum.Status):
		return x.e, true
	}
	return sum, false
}

// current returns the live subscription's epoch (0: none), to give put
// for a read that starts now.
func (c *execCache) current() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// put keeps an execution: one the feed of subscription epoch delivered
// (fed), or one read from the cloud by a read that started during
// subscription epoch (0: none was up). A read never replaces a newer state,
// and is live only when no subscription began or ended while it ran.
func (c *execCache) put(job string, e operator.Execution, fed bool, epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := execKey(job, e.Thing)
	if old, ok := c.m[k]; ok && !fed && old.epoch == c.epoch && c.epoch != 0 &&
		(old.e.ExecutionNum > e.ExecutionNum || old.e.ExecutionNum == e.ExecutionNum && old.e.VersionNumber > e.VersionNumber) {
		return
	}
	if len(c.m) >= maxCached {
		c.m = map[string]cached{}
	}
	x := cached{e: e}
	if epoch == c.epoch {
		x.epoch = epoch // the feed tells what follows
	}
	c.m[k] = x
}

func (c *execCache) remove(job, thing string) {
	c.mu.Lock()
	delete(c.m, execKey(job, thing))
	c.mu.Unlock()
}

// setEpoch records that subscription epoch is up (0: none is): entries of
// another subscription stop being live.
func (c *execCache) setEpoch(epoch uint64) {
	c.mu.Lock()
	c.epoch = epoch
	c.mu.Unlock()
}

// withDetails fills in the statusDetails of a list's executions of job:
// from the cache, else by reading them (a few at a time). QUEUED ones have
// none, nor ones deleted since the list was read.
func (s *Server) withDetails(ctx context.Context, job string, execs []operator.Execution) ([]operator.Execution, error) {
	out := make([]operator.Execution, len(execs))
	var todo []int
	for i, e := range execs {
		if e.JobID == "" {
			e.JobID = job
		}
		out[i] = e
		if e.Status == "QUEUED" {
			continue
		}
		if x, ok := s.cache.get(e.JobID, e); ok {
			out[i] = x
			continue
		}
		todo = append(todo, i)
	}
	epoch := s.cache.current()
	err := parallel(ctx, len(todo), func(ctx context.Context, k int) error {
		i := todo[k]
		d, err := s.c.DescribeExecution(ctx, out[i].JobID, out[i].Thing)
		if operator.IsNotFound(err) {
			// Gone since it was listed (its job is being deleted, or the
			// execution was): shown as listed, without details.
			return nil
		}
		if err != nil {
			return err
		}
		s.cache.put(d.JobID, d, false, epoch)
		s.events.observe(d)
		out[i] = d
		return nil
	})
	return out, err
}

// parallel runs f for 0..n-1, eight at a time, and returns the first error.
func parallel(ctx context.Context, n int, f func(ctx context.Context, i int) error) error {
	if n == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, 8)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(ctx, i); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// pageTokens remembers the list tokens of a job's execution pages, so that
// page N is one read away once it was reached.
type pageTokens struct {
	mu sync.Mutex
	m  map[string][]string // job|status|size → token of page i (page 0: "")
}

func newPageTokens() *pageTokens { return &pageTokens{m: map[string][]string{}} }

func pageKey(job, status string, size int) string {
	return job + "|" + status + "|" + itoa(size)
}

// page returns the executions on page i (from 0) of a job's list.
func (s *Server) executionPage(ctx context.Context, job, status string, size, i int) (*operator.ExecutionPage, error) {
	key := pageKey(job, status, size)
	s.pages.mu.Lock()
	toks := s.pages.m[key]
	if len(toks) == 0 {
		toks = []string{""}
	}
	s.pages.mu.Unlock()
	// Walk from the last page whose token is known.
	k := min(i, len(toks)-1)
	for {
		p, err := s.c.ListExecutions(ctx, job, status, toks[k], size)
		if err != nil {
			return nil, err
		}
		if k+1 == len(toks) && p.NextToken != "" {
			toks = append(toks, p.NextToken)
		}
		if k == i || p.NextToken == "" {
			s.pages.mu.Lock()
			if len(s.pages.m) > 10_000 {
				s.pages.m = map[string][]string{}
			}
			if len(toks) > len(s.pages.m[key]) {
				s.pages.m[key] = toks
			}
			s.pages.mu.Unlock()
			return p, nil
		}
		k++
	}
}

// forget drops what is remembered of a job's pages (it was deleted, or a
// list changed shape).
func (p *pageTokens) forget(job string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k := range p.m {
		if len(k) > len(job) && k[:len(job)+1] == job+"|" {
			delete(p.m, k)
		}
	}
}

// thingCache keeps the registry's things and groups for a few seconds: the
// fleet page reads them on every refresh.
type thingCache struct {
	mu       sync.Mutex
	things   []operator.ThingInfo
	thingsAt time.Time
	groups   map[string][]string // thing → its groups (direct)
	names    []string            // every group
	groupsAt time.Time
}

const (
	thingsTTL = 5 * time.Second
	groupsTTL = 15 * time.Second
)

func (s *Server) allThings(ctx context.Context) ([]operator.ThingInfo, error) {
	tc := s.things
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.things != nil && s.cfg.Clock.Now().Sub(tc.thingsAt) < thingsTTL {
		return tc.things, nil
	}
	th, err := s.c.ListThings(ctx)
	if err != nil {
		return nil, err
	}
	tc.things, tc.thingsAt = th, s.cfg.Clock.Now()
	return th, nil
}

// groupsOf returns every group and each thing's groups.
func (s *Server) groupsOf(ctx context.Context) ([]string, map[string][]string, error) {
	tc := s.things
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.groups != nil && s.cfg.Clock.Now().Sub(tc.groupsAt) < groupsTTL {
		return tc.names, tc.groups, nil
	}
	names, err := s.c.ListThingGroups(ctx)
	if err != nil {
		return nil, nil, err
	}
	members := make([][]string, len(names))
	if err := parallel(ctx, len(names), func(ctx context.Context, i int) error {
		var err error
		members[i], err = s.c.ThingsInGroup(ctx, names[i], false)
		return err
	}); err != nil {
		return nil, nil, err
	}
	byThing := map[string][]string{}
	for i, g := range names {
		for _, th := range members[i] {
			byThing[th] = append(byThing[th], g)
		}
	}
	for _, gs := range byThing {
		sort.Strings(gs)
	}
	tc.names, tc.groups, tc.groupsAt = names, byThing, s.cfg.Clock.Now()
	return names, byThing, nil
}
