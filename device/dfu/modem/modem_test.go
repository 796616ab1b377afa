package modem

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/awsfota/awsfota/delta"
	"github.com/awsfota/awsfota/device/dfu"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memModem keeps its scratch area in memory.
type memModem struct {
	scratch   []byte
	committed bool
	prepared  int
}

func (m *memModem) Version() (string, error) { return "mfw_1.3.1", nil }
func (m *memModem) PrepareScratch(int64) error {
	m.scratch, m.committed = nil, false
	m.prepared++
	return nil
}
func (m *memModem) WriteScratch(p []byte, off int64) error {
	if int64(len(m.scratch)) != off {
		return errors.New("out of order")
	}
	m.scratch = append(m.scratch, p...)
	return nil
}
func (m *memModem) ReadScratch(p []byte, off int64) (int, error) {
	return bytes.NewReader(m.scratch).ReadAt(p, off)
}
func (m *memModem) Commit() error  { m.committed = true; return nil }
func (m *memModem) Discard() error { m.scratch, m.committed = nil, false; return nil }

func write(t *testing.T, tg *Target, img []byte) {
	t.Helper()
	if err := tg.Init(int64(len(img)), 0); err != nil {
		t.Fatal(err)
	}
	for p := img; len(p) > 0; {
		n := min(333, len(p))
		if err := tg.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
}

func TestFullImage(t *testing.T) {
	m := &memModem{}
	tg := NewTarget(m)
	var erasing []bool
	tg.Erasing = func(on bool) { erasing = append(erasing, on) }
	img := FullImage("mfw_1.3.2", bytes.Repeat([]byte{7}, 5000))
	write(t, tg, img)
	if len(erasing) != 2 || !erasing[0] || erasing[1] {
		t.Fatalf("erase events %v", erasing)
	}
	im, err := tg.Done()
	sum := sha256.Sum256(img)
	if err != nil || im.Type != dfu.TypeModemFull || im.Version != "mfw_1.3.2" || im.Size != int64(len(img)) || !bytes.Equal(im.SHA256, sum[:]) {
		t.Fatalf("Done = %+v, %v", im, err)
	}
	if err := tg.Schedule(false); err != nil || !m.committed {
		t.Fatal("not committed")
	}
	if err := tg.Reset(); err != nil || m.committed || m.scratch != nil {
		t.Fatal("not discarded")
	}
	if v, err := ParseFullImage(img); err != nil || v != "mfw_1.3.2" {
		t.Fatal(v, err)
	}
}

func TestDeltasAndRefusals(t *testing.T) {
	m := &memModem{}
	tg := NewTarget(m)
	old := FullImage("mfw_1.3.1", bytes.Repeat([]byte{1, 2, 3}, 3000))
	next := FullImage("mfw_1.3.2", bytes.Repeat([]byte{1, 2, 4}, 3000))
	var p bytes.Buffer
	delta.Create(&p, bytes.NewReader(old), int64(len(old)), bytes.NewReader(next))
	write(t, tg, p.Bytes())
	if im, err := tg.Done(); err != nil || im.Type != dfu.TypeDelta || im.Version != "" {
		t.Fatalf("our delta: %+v %v", im, err)
	}
	nrf := append([]byte{0, 0, 0, 0, 0x6d, 0x65, 0x44, 0x75}, bytes.Repeat([]byte{9}, 100)...)
	write(t, tg, nrf)
	if im, err := tg.Done(); err != nil || im.Type != dfu.TypeModemDelta {
		t.Fatalf("nRF delta: %+v %v", im, err)
	}
	for name, bad := range map[string][]byte{
		"application image": {0x3d, 0xb8, 0xf3, 0x96, 0, 0, 0, 0, 0, 0},
		"garbage":           bytes.Repeat([]byte{5}, 50),
		"bad version":       {0xd2, 0x84, 9, 0, 'x'},
	} {
		write(t, tg, bad)
		if _, err := tg.Done(); !errors.Is(err, dfu.ErrInvalidImage) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := tg.Init(10, 4); err == nil {
		t.Fatal("resume accepted")
	}
	tg.Init(10, 0)
	if err := tg.Write(make([]byte, 11)); !errors.Is(err, dfu.ErrInvalidImage) {
		t.Fatal("overlong update accepted")
	}
	if off, _ := tg.Checkpoint(); off != 0 {
		t.Fatal(off)
	}
}
