// Package state persists the device agent's state so that an update survives
// a reboot or a power cut: the job, the phase, the image identity and the last
// durable download offset.
//
// A Store holds one opaque record (the caller encodes it). The file store
// writes durably — temp file, fsync, rename, fsync of the directory — into two
// alternating copies, each with a sequence number and a checksum, as bbolt
// keeps two meta pages: a torn or corrupt newest copy falls back to the older
// one, so a power cut can lose at most the last save, never the state.
//
// It imports the standard library and atomicfile (the durable write);
// it must never import cloud/*, sim/ or other device/* packages.
package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"

	"github.com/awsfota/awsfota/atomicfile"
)

// Store keeps the agent's state record. Implementations are safe for
// concurrent use.
type Store interface {
	// Load returns the newest saved record, or ErrNoState when nothing was
	// ever saved.
	Load() ([]byte, error)
	// Save durably replaces the record: when Save returns nil, a power cut
	// cannot bring back an older one.
	Save(record []byte) error
}

// ErrNoState is returned by Load when no record was ever saved.
var ErrNoState = errors.New("state: nothing saved yet")

// ErrCorrupt is returned by Load when copies exist but none is intact.
var ErrCorrupt = errors.New("state: every saved copy is corrupt")

const (
	headerLen = 16         // magic u32, seq u64, crc u32; then a u32 length and the record
	magic     = 0x46534154 // "TASF"
)

// Dir is a Store in a directory, as two files state.a and state.b.
type Dir struct {
	mu   sync.Mutex
	dir  string
	seq  uint64
	next int // which copy the next Save overwrites (0 = a, 1 = b)
}

var names = [2]string{"state.a", "state.b"}

// OpenDir opens (creating if needed) the state directory dir.
func OpenDir(dir string) (*Dir, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	d := &Dir{dir: dir}
	// Find the newest intact copy so that the next Save overwrites the other.
	if _, seq, idx, err := d.newest(); err == nil {
		d.seq = seq
		d.next = 1 - idx
	}
	return d, nil
}

// Path returns the directory.
func (d *Dir) Path() string { return d.dir }

// Load returns the newest intact record.
func (d *Dir) Load() ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	rec, _, _, err := d.newest()
	return rec, err
}

func (d *Dir) newest() ([]byte, uint64, int, error) {
	var (
		best    []byte
		bestSeq uint64
		bestIdx = -1
		found   int
		errs    []error
	)
	for i, n := range names {
		b, err := os.ReadFile(filepath.Join(d.dir, n))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		found++
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rec, seq, err := decode(b)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
			continue
		}
		if bestIdx < 0 || seq > bestSeq {
			best, bestSeq, bestIdx = rec, seq, i
		}
	}
	switch {
	case bestIdx >= 0:
		return best, bestSeq, bestIdx, nil
	case found == 0:
		return nil, 0, 0, ErrNoState
	default:
		return nil, 0, 0, fmt.Errorf("%w in %s: %v", ErrCorrupt, d.dir, errors.Join(errs...))
	}
}

// Save writes record to the older copy, durably.
func (d *Dir) Save(record []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	seq := d.seq + 1
	name := filepath.Join(d.dir, names[d.next])
	if err := atomicfile.WriteFile(name, encode(record, seq), 0o600); err != nil {
		return fmt.Errorf("state: saving: %w", err)
	}
	d.seq = seq
	d.next = 1 - d.next
	return nil
}

func encode(rec []byte, seq uint64) []byte {
	b := make([]byte, headerLen+4+len(rec))
	binary.LittleEndian.PutUint32(b[0:], magic)
	binary.LittleEndian.PutUint64(b[4:], seq)
	binary.LittleEndian.PutUint32(b[16:], uint32(len(rec)))
	copy(b[20:], rec)
	binary.LittleEndian.PutUint32(b[12:], crc32.ChecksumIEEE(b[16:]))
	// The sequence number is covered too: fold it into the checksum.
	binary.LittleEndian.PutUint32(b[12:], crc32.Update(binary.LittleEndian.Uint32(b[12:]), crc32.IEEETable, b[4:12]))
	return b
}

func decode(b []byte) ([]byte, uint64, error) {
	if len(b) < headerLen+4 {
		return nil, 0, fmt.Errorf("%d bytes is shorter than the header", len(b))
	}
	if binary.LittleEndian.Uint32(b) != magic {
		return nil, 0, fmt.Errorf("bad magic")
	}
	want := binary.LittleEndian.Uint32(b[12:])
	got := crc32.Update(crc32.ChecksumIEEE(b[16:]), crc32.IEEETable, b[4:12])
	if got != want {
		return nil, 0, fmt.Errorf("checksum mismatch")
	}
	n := binary.LittleEndian.Uint32(b[16:])
	if int64(n) != int64(len(b)-20) {
		return nil, 0, fmt.Errorf("length %d does not match the file", n)
	}
	return bytes.Clone(b[20:]), binary.LittleEndian.Uint64(b[4:]), nil
}

// Mem is a Store in memory, for tests.
type Mem struct {
	mu  sync.Mutex
	rec []byte
	set bool
	// Saves counts successful saves.
	Saves int
}

// Load returns the saved record.
func (m *Mem) Load() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.set {
		return nil, ErrNoState
	}
	return bytes.Clone(m.rec), nil
}

// Save keeps a copy of record.
func (m *Mem) Save(record []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rec, m.set = bytes.Clone(record), true
	m.Saves++
	return nil
}
