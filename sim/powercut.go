package sim

import (
	"context"
	"errors"
	"sync"

	"github.com/awsfota/awsfota/device/flash"
	"github.com/awsfota/awsfota/device/state"
)

// ErrPowerCut is what every operation of a device returns once its Power
// has been cut, and what Device.Run returns then.
var ErrPowerCut = errors.New("sim: power cut")

// Power is a simulated supply that fails after a budget of operations: the
// operation that exhausts it is torn (a flash write or erase is applied in
// part) and every later flash access, state save and publish fails, as if
// the device had lost power at that instant. The bootloader is not subject
// to it: MCUboot's swap is itself power-fail safe, which the simulation does
// not re-create.
type Power struct {
	mu     sync.Mutex
	budget int // operations allowed; < 0: unlimited
	used   int
	cut    bool
	onCut  []func()
}

// NewPower returns a supply that allows budget operations (negative:
// unlimited, to count the operations of a run with Used).
func NewPower(budget int) *Power { return &Power{budget: budget} }

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

// powerFlash subjects a flash area to a Power.
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
		f.Flash.WriteAt(b[:len(b)/2], off) // half of the bytes made it
	}
	if err != nil {
		return 0, err
	}
	return f.Flash.WriteAt(b, off)
}

func (f *powerFlash) Erase(off, n int64) error {
	torn, err := f.p.op()
	if torn {
		g := f.Flash.Geometry()
		if half := n / 2 / g.SectorSize * g.SectorSize; half > 0 {
			f.Flash.Erase(off, half) // the first sectors were erased
		}
	}
	if err != nil {
		return err
	}
	return f.Flash.Erase(off, n)
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
