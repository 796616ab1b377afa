package sim

import (
	"hash/maphash"
	"io"
	"slices"
	"sync"
	"unique"

	"github.com/awsfota/awsfota/mcuboot"
)

// ValidateCache remembers what MCUboot's image check (mcuboot.Verify with
// Keys) answered for the contents of SharedFlash slots, so that a fleet of
// simulated devices booting the same image checks its hash and signature
// once, not once per device and boot: the answer is a function of the bytes
// alone, and SharedFlash knows when two slots hold the same bytes (their
// sectors are the same interned values). A slot that is not a SharedFlash,
// or has a sector being written, is checked as without the cache. Its
// Validate method is a Bootloader.Validate. Safe for concurrent use.
type ValidateCache struct {
	Keys []*mcuboot.PublicKey
	// Size bounds the answers kept (default 64).
	Size int

	once    sync.Once
	seed    maphash.Seed
	mu      sync.Mutex
	entries map[uint64][]validated
	order   []uint64
	hits    int64
}

type validated struct {
	sectors []unique.Handle[string]
	size    int64
	err     error
}

// Validate checks the image at the start of r (size bytes) as
// mcuboot.Verify does.
func (c *ValidateCache) Validate(r io.ReaderAt, size int64) error {
	c.once.Do(func() {
		c.seed = maphash.MakeSeed()
		c.entries = map[uint64][]validated{}
		if c.Size <= 0 {
			c.Size = 64
		}
	})
	f, ok := r.(*SharedFlash)
	if !ok {
		_, err := mcuboot.Verify(r, size, c.Keys)
		return err
	}
	sectors, ok := f.sectorsOf(size)
	if !ok {
		_, err := mcuboot.Verify(r, size, c.Keys)
		return err
	}
	var h maphash.Hash
	h.SetSeed(c.seed)
	for _, s := range sectors {
		maphash.WriteComparable(&h, s)
	}
	maphash.WriteComparable(&h, size)
	key := h.Sum64()
	c.mu.Lock()
	for _, e := range c.entries[key] {
		if e.size == size && slices.Equal(e.sectors, sectors) {
			c.hits++
			c.mu.Unlock()
			return e.err
		}
	}
	c.mu.Unlock()

	_, err := mcuboot.Verify(r, size, c.Keys)

	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.order) >= c.Size {
		old := c.order[0]
		c.order = c.order[1:]
		if es := c.entries[old]; len(es) > 1 {
			c.entries[old] = es[1:]
		} else {
			delete(c.entries, old)
		}
	}
	c.entries[key] = append(c.entries[key], validated{sectors: sectors, size: size, err: err})
	c.order = append(c.order, key)
	return err
}

// Hits is how many checks the cache answered.
func (c *ValidateCache) Hits() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits
}
