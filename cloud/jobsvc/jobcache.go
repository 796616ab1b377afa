package jobsvc

import (
	"bytes"
	"slices"
	"sync"
)

// jobCache keeps decoded jobs with the bytes they were decoded from. A job
// on 10 000 things is half a megabyte of JSON (its targets), and every
// device request reads its job: decoding it each time made a request cost
// milliseconds. A cached job is used only while the stored bytes are the
// same, so nothing needs invalidating; callers get their own copy of the
// target lists (transactions append to them), and the settings are shared
// because they are replaced, never changed in place.
type jobCache struct {
	mu sync.Mutex
	m  map[string]cachedJob
}

type cachedJob struct {
	raw []byte
	job Job
}

// jobCacheSize bounds the jobs kept: the ones a fleet works on at a time.
const jobCacheSize = 64

func (c *jobCache) get(id string, raw []byte) (Job, bool) {
	c.mu.Lock()
	e, ok := c.m[id]
	c.mu.Unlock()
	if !ok || !bytes.Equal(e.raw, raw) {
		return Job{}, false
	}
	return e.job.clone(), true
}

func (c *jobCache) put(id string, raw []byte, j Job) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cachedJob{}
	}
	if _, ok := c.m[id]; !ok && len(c.m) >= jobCacheSize {
		for k := range c.m { // any one
			delete(c.m, k)
			break
		}
	}
	c.m[id] = cachedJob{raw: bytes.Clone(raw), job: j.clone()}
}

// clone copies the job with target lists of its own.
func (j Job) clone() Job {
	j.Targets, j.TargetThings, j.TargetGroups = slices.Clone(j.Targets), slices.Clone(j.TargetThings), slices.Clone(j.TargetGroups)
	return j
}
