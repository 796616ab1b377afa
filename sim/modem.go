package sim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"

	"github.com/awsfota/awsfota/atomicfile"
	"github.com/awsfota/awsfota/delta"
	"github.com/awsfota/awsfota/device/dfu"
	"github.com/awsfota/awsfota/device/dfu/modem"
)

// Modem simulates a cellular modem with its firmware in a directory: fw.bin
// (the firmware it runs, a full modem image), scratch.bin (an update being
// received) and pending (set by Commit). Restart installs a committed update
// as the modem does when it starts: a full image replaces the firmware, an
// awsfota delta (or an nRF-style modem delta wrapping one) is applied to it;
// an update that does not produce a valid full image leaves the firmware as
// it was. It implements modem.Modem.
type Modem struct {
	mu  sync.Mutex
	dir string
}

var _ modem.Modem = (*Modem)(nil)

// ModemImage builds a full modem image of about size bytes whose body is
// pseudo-random, seeded by the version, with runs that deltas compress.
func ModemImage(version string, size int) []byte {
	var seed uint64
	for _, c := range version {
		seed = seed*131 + uint64(c)
	}
	r := rand.New(rand.NewPCG(seed, 9))
	body := make([]byte, size)
	for i := range body {
		body[i] = byte(i / 64)
		if r.IntN(16) == 0 {
			body[i] = byte(r.Uint32())
		}
	}
	return modem.FullImage(version, body)
}

// OpenModem opens the modem kept in dir, creating it with firmware version
// when it is new.
func OpenModem(dir, version string) (*Modem, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	m := &Modem{dir: dir}
	if _, err := os.Stat(m.path("fw.bin")); errors.Is(err, os.ErrNotExist) {
		if err := atomicfile.WriteFile(m.path("fw.bin"), ModemImage(version, 200_000), 0o644); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Modem) path(name string) string { return filepath.Join(m.dir, name) }

// Version returns the running firmware's version.
func (m *Modem) Version() (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, err := os.Open(m.path("fw.bin"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 4+255)
	n, _ := io.ReadFull(f, head)
	return modem.ParseFullImage(head[:n])
}

// ReadAt reads the running firmware (the base of modem deltas).
func (m *Modem) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, err := os.Open(m.path("fw.bin"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.ReadAt(p, off)
}

// PrepareScratch empties the scratch area.
func (m *Modem) PrepareScratch(int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	os.Remove(m.path("pending"))
	return os.WriteFile(m.path("scratch.bin"), nil, 0o644)
}

// WriteScratch writes update bytes at off.
func (m *Modem) WriteScratch(p []byte, off int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, err := os.OpenFile(m.path("scratch.bin"), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(p, off); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadScratch reads the scratch area back.
func (m *Modem) ReadScratch(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, err := os.Open(m.path("scratch.bin"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.ReadAt(p, off)
}

// Commit marks the scratch area's update to be installed at the next start.
func (m *Modem) Commit() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return atomicfile.WriteFile(m.path("pending"), []byte("1"), 0o644)
}

// Discard forgets the update.
func (m *Modem) Discard() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	os.Remove(m.path("pending"))
	err := os.Remove(m.path("scratch.bin"))
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return err
}

// Restart starts the modem: a committed update is installed (or refused,
// leaving the firmware as it was). It returns the error of a refused update.
func (m *Modem) Restart() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := os.Stat(m.path("pending")); err != nil {
		return nil
	}
	defer os.Remove(m.path("pending"))
	update, err := os.ReadFile(m.path("scratch.bin"))
	if err != nil {
		return fmt.Errorf("sim: modem update lost: %w", err)
	}
	var next []byte
	switch dfu.Identify(update) {
	case dfu.TypeModemFull:
		next = update
	case dfu.TypeModemDelta:
		update = update[8:] // the simulated nRF delta wraps an awsfota delta
		fallthrough
	case dfu.TypeDelta:
		fw, err := os.Open(m.path("fw.bin"))
		if err != nil {
			return err
		}
		var out bytes.Buffer
		_, err = delta.Apply(fw, bytes.NewReader(update), &out)
		fw.Close()
		if err != nil {
			return fmt.Errorf("sim: the modem refused its update: %w", err)
		}
		next = out.Bytes()
	default:
		return fmt.Errorf("sim: the modem refused its update: not a modem image")
	}
	if _, err := modem.ParseFullImage(next); err != nil {
		return fmt.Errorf("sim: the modem refused its update: %w", err)
	}
	return atomicfile.WriteFile(m.path("fw.bin"), next, 0o644)
}
