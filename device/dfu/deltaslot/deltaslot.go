// Package deltaslot is the DFU target for awsfota delta patches: it applies
// a patch against the image the device runs (the base) while the patch
// downloads, and writes the result through another target — for the
// application, the MCUboot secondary slot, which checks the result (hash,
// signature) and schedules it like a full image.
//
// A patch is applied in one pass, so it cannot resume in the middle:
// Checkpoint is always 0 and an interrupted download starts the patch again
// (patches are small; the base is never touched). The base is checked against
// the patch's header before anything is written.
//
// It imports the standard library, delta and device/dfu; it must never import
// cloud/* or sim/.
package deltaslot

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/awsfota/awsfota/delta"
	"github.com/awsfota/awsfota/device/dfu"
)

// Target applies a patch against Base into Out.
type Target struct {
	base io.ReaderAt
	out  dfu.Target

	pw   *io.PipeWriter
	done chan error
	sum  hash.Hash
	n    int64
	size int64
}

var _ dfu.Target = (*Target)(nil)

// New returns a target that applies patches against base (the running
// image; the patch says how many of its bytes) into out.
func New(base io.ReaderAt, out dfu.Target) *Target { return &Target{base: base, out: out} }

// Init starts a patch of size bytes; offset must be 0.
func (t *Target) Init(size, offset int64) error {
	t.abort()
	if offset != 0 {
		return fmt.Errorf("deltaslot: a patch cannot resume at offset %d: start it again", offset)
	}
	if err := t.out.Init(0, 0); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	t.pw, t.done, t.sum, t.n, t.size = pw, make(chan error, 1), sha256.New(), 0, size
	go func() {
		_, err := delta.Apply(t.base, pr, writer{t.out})
		if err == nil {
			// Whatever follows the patch's body is not part of it.
			if n, _ := io.Copy(io.Discard, pr); n > 0 {
				err = fmt.Errorf("%w: %d bytes after the end of the patch", delta.ErrCorrupt, n)
			}
		}
		pr.CloseWithError(err)
		t.done <- err
	}()
	return nil
}

// writer adapts a target to the io.Writer Apply writes the result to.
type writer struct{ t dfu.Target }

func (w writer) Write(p []byte) (int, error) {
	if err := w.t.Write(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// classify maps an error of Apply to the dfu sentinels.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, delta.ErrBaseMismatch):
		return fmt.Errorf("%w: %w", dfu.ErrBaseMismatch, err)
	case errors.Is(err, delta.ErrNotPatch), errors.Is(err, delta.ErrCorrupt), errors.Is(err, delta.ErrUnsupported),
		errors.Is(err, delta.ErrTooLarge), errors.Is(err, delta.ErrResultMismatch):
		return fmt.Errorf("%w: %w", dfu.ErrInvalidImage, err)
	}
	return err // the output target's own failure (flash), as it reported it
}

// Write feeds patch bytes to the apply.
func (t *Target) Write(p []byte) error {
	if t.pw == nil {
		return dfu.ErrNotInitialised
	}
	t.sum.Write(p)
	t.n += int64(len(p))
	if t.size > 0 && t.n > t.size {
		return fmt.Errorf("%w: received %d bytes, more than the %d announced", dfu.ErrInvalidImage, t.n, t.size)
	}
	if _, err := t.pw.Write(p); err != nil {
		return classify(err)
	}
	return nil
}

// Offset returns the patch bytes received.
func (t *Target) Offset() int64 { return t.n }

// Checkpoint is always 0: a patch is applied in one go.
func (t *Target) Checkpoint() (int64, error) { return 0, nil }

// Done waits for the apply to end, then has the output target check the
// result. The Image describes the result, except Size and SHA256 which are
// the patch's (what the job document announces).
func (t *Target) Done() (dfu.Image, error) {
	if t.pw == nil {
		return dfu.Image{}, dfu.ErrNotInitialised
	}
	t.pw.Close()
	err := <-t.done
	t.pw = nil
	if err != nil {
		return dfu.Image{}, classify(err)
	}
	im, err := t.out.Done()
	if err != nil {
		return dfu.Image{}, err
	}
	im.Type, im.Size, im.SHA256 = dfu.TypeDelta, t.n, t.sum.Sum(nil)
	return im, nil
}

// Schedule asks the output target to install the result.
func (t *Target) Schedule(permanent bool) error { return t.out.Schedule(permanent) }

// Reset stops an apply and resets the output target.
func (t *Target) Reset() error {
	t.abort()
	return t.out.Reset()
}

func (t *Target) abort() {
	if t.pw != nil {
		t.pw.CloseWithError(errors.New("deltaslot: reset"))
		<-t.done
		t.pw = nil
	}
}
