package sim

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"

	"github.com/awsfota/awsfota/device/flash"
	"github.com/awsfota/awsfota/device/state"
)

// ErrPowerCut is what every operation of a device returns once its Power
// has been cut, and what Device.Run returns then.
var ErrPowerCut = errors.New("sim: power cut")

// Power is a simulated supply that fails after a budget of operations: the
// operation that exhausts it is torn — a flash write or erase is left as NOR
// flash leaves one cut short (see powerFlash) — and every later flash access,
// state save and publish fails, as if the device had lost power at that
// instant. The bootloader runs on the same supply: a cut may fall in the
// middle of a swap or a revert, which it resumes at the next boot.
type Power struct {
	mu     sync.Mutex
	budget int // operations allowed; < 0: unlimited
	used   int
	cut    bool
	onCut  []func()
	rng    *rand.Rand // the damage of a torn operation
}

// NewPower returns a supply that allows budget operations (negative:
// unlimited, to count the operations of a run with Used). The damage a cut
// does is drawn from a source seeded by budget.
func NewPower(budget int) *Power { return NewPowerSeed(budget, uint64(budget)) }

// NewPowerSeed is NewPower with the damage of a torn operation drawn from
// seed.
func NewPowerSeed(budget int, seed uint64) *Power {
	return &Power{budget: budget, rng: rand.New(rand.NewPCG(seed, 0x5eed))}
}

// Used returns the operations done so far.
func (p *Power) Used() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.used
}

// Cut reports whether the power was cut.
func (p *Power) Cut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

// whenCut registers f to run once the power is cut.
func (p *Power) whenCut(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		go f()
		return
	}
	p.onCut = append(p.onCut, f)
}

// intN draws the damage of a torn operation.
func (p *Power) intN(n int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rng.IntN(n)
}

// op accounts for one operation. It returns (false, nil) to go ahead,
// (true, ErrPowerCut) for the operation during which the power fails (to be
// torn), and (false, ErrPowerCut) once the power is off.
func (p *Power) op() (torn bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false, ErrPowerCut
	}
	p.used++
	if p.budget >= 0 && p.used >= p.budget {
		p.cut = true
		for _, f := range p.onCut {
			go f()
		}
		p.onCut = nil
		return true, ErrPowerCut
	}
	return false, nil
}

// powerFlash subjects a flash area to a Power. An operation the power fails
// during is torn as on NOR flash:
//   - a write programs a prefix of its bytes, then one byte only in part
//     (some of the bits it clears, cleared), and nothing after;
//   - an erase erases the sectors before one, leaves that one undefined
//     (each byte its old value with random bits set: an erase half done)
//     and the sectors after it untouched.
type powerFlash struct {
	flash.Flash
	p *Power
}

func (f *powerFlash) ReadAt(b []byte, off int64) (int, error) {
	if _, err := f.p.op(); err != nil {
		return 0, err
	}
	return f.Flash.ReadAt(b, off)
}

func (f *powerFlash) WriteAt(b []byte, off int64) (int, error) {
	torn, err := f.p.op()
	if torn {
		f.tearWrite(b, off)
	}
	if err != nil {
		return 0, err
	}
	return f.Flash.WriteAt(b, off)
}

func (f *powerFlash) tearWrite(b []byte, off int64) {
	k := f.p.intN(len(b) + 1) // bytes fully programmed
	if k == len(b) {
		f.Flash.WriteAt(b, off)
		return
	}
	part := make([]byte, k+1)
	copy(part, b[:k])
	old := make([]byte, 1)
	if _, err := f.Flash.ReadAt(old, off+int64(k)); err != nil {
		return
	}
	// Programming clears bits: some of those b[k] clears are cleared.
	part[k] = old[0] & (b[k] | byte(f.p.intN(256)))
	f.Flash.WriteAt(part, off) // ErrNotErased only if b itself was invalid
}

func (f *powerFlash) Erase(off, n int64) error {
	torn, err := f.p.op()
	if torn {
		f.tearErase(off, n)
	}
	if err != nil {
		return err
	}
	return f.Flash.Erase(off, n)
}

func (f *powerFlash) tearErase(off, n int64) {
	z := f.Flash.Geometry().SectorSize
	if n <= 0 || off%z != 0 || n%z != 0 {
		return // the real Erase refuses it
	}
	k := int64(f.p.intN(int(n / z))) // sectors erased before the cut
	if k > 0 {
		f.Flash.Erase(off, k*z)
	}
	at := off + k*z
	sec := make([]byte, z)
	if _, err := f.Flash.ReadAt(sec, at); err != nil {
		return
	}
	density := f.p.intN(9) // how far the erase got: bits set out of 8, on average
	for i := range sec {
		var mask byte
		for bit := 0; bit < 8; bit++ {
			if f.p.intN(8) < density {
				mask |= 1 << bit
			}
		}
		sec[i] |= mask
	}
	f.Flash.Erase(at, z)
	f.Flash.WriteAt(sec, at)
}

func (f *powerFlash) Sync() error {
	if _, err := f.p.op(); err != nil {
		return err
	}
	return f.Flash.Sync()
}

// powerStore subjects the state store to a Power. A save is atomic (temp
// file and rename), so a save during which the power fails leaves the old
// record.
type powerStore struct {
	state.Store
	p *Power
}

func (s *powerStore) Save(rec []byte) error {
	if _, err := s.p.op(); err != nil {
		return err
	}
	return s.Store.Save(rec)
}

// powerTransport drops publishes once the power is off: a device without
// power sends nothing.
type powerTransport struct {
	t interface {
		Publish(ctx context.Context, topic string, payload []byte) error
	}
	p *Power
}

func (t *powerTransport) Publish(ctx context.Context, topic string, payload []byte) error {
	if _, err := t.p.op(); err != nil {
		return err
	}
	return t.t.Publish(ctx, topic, payload)
}
