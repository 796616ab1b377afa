package dfu

import (
	"errors"
	"fmt"
)

// Router is a Target that hands an image to the target for its type, told
// from the image's first bytes (Identify), as the seed's dfu_target does: one
// job document can carry a full image or a delta, and the device installs
// each the right way.
//
// Only a target that can resume (it returns a non-zero Checkpoint) is resumed
// at an offset; Resume names which one that is.
type Router struct {
	// Targets by image type.
	Targets map[ImageType]Target
	// Resume is the type whose target an Init at a non-zero offset resumes
	// (TypeMCUboot for an application slot).
	Resume ImageType

	cur  Target
	kind ImageType
	size int64
	head []byte
}

var _ Target = (*Router)(nil)

// Kind returns the type of the image being received, TypeUnknown until the
// first bytes are in.
func (r *Router) Kind() ImageType { return r.kind }

// Init prepares for an image of size bytes. At offset 0 the target is chosen
// when the first bytes arrive; at another offset the Resume target resumes.
func (r *Router) Init(size, offset int64) error {
	r.cur, r.kind, r.size, r.head = nil, TypeUnknown, size, r.head[:0]
	if offset == 0 {
		return nil
	}
	t, ok := r.Targets[r.Resume]
	if !ok {
		return fmt.Errorf("%w: cannot resume an image at offset %d", ErrUnsupportedType, offset)
	}
	r.cur, r.kind = t, r.Resume
	return t.Init(size, offset)
}

// Write passes p to the chosen target, choosing it first.
func (r *Router) Write(p []byte) error {
	if r.cur != nil {
		return r.cur.Write(p)
	}
	r.head = append(r.head, p...)
	if len(r.head) < IdentifyLen {
		return nil
	}
	return r.choose()
}

func (r *Router) choose() error {
	kind := Identify(r.head)
	t, ok := r.Targets[kind]
	if kind == TypeUnknown {
		// Not an image at all: the file is wrong, not the device.
		return fmt.Errorf("%w: the file is not a firmware image of any type this software knows (first bytes % x); check the job document's URL and the uploaded file",
			ErrInvalidImage, r.head[:min(len(r.head), IdentifyLen)])
	}
	if !ok {
		return fmt.Errorf("%w: the file is %s (first bytes % x), which this device cannot install here", ErrUnsupportedType, describe(kind), r.head[:min(len(r.head), IdentifyLen)])
	}
	if err := t.Init(r.size, 0); err != nil {
		return err
	}
	r.cur, r.kind = t, kind
	head := r.head
	r.head = r.head[:0]
	return t.Write(head)
}

func describe(k ImageType) string {
	if k == TypeUnknown {
		return "no known image type"
	}
	return "a " + k.String() + " image"
}

// Offset returns the bytes received.
func (r *Router) Offset() int64 {
	if r.cur == nil {
		return int64(len(r.head))
	}
	return r.cur.Offset()
}

// Checkpoint returns the chosen target's durable offset (0 before one is
// chosen).
func (r *Router) Checkpoint() (int64, error) {
	if r.cur == nil {
		return 0, nil
	}
	return r.cur.Checkpoint()
}

// Done checks the complete image with the chosen target.
func (r *Router) Done() (Image, error) {
	if r.cur == nil {
		if len(r.head) == 0 {
			return Image{}, ErrNotInitialised
		}
		if err := r.choose(); err != nil {
			if errors.Is(err, ErrInvalidImage) {
				return Image{}, err
			}
			return Image{}, fmt.Errorf("%w: %w", ErrInvalidImage, err)
		}
	}
	return r.cur.Done()
}

// Schedule asks the chosen target to install the image. After a restart,
// when no target was chosen in this session, the Resume target holds the
// verified image (an application slot holds a delta's result too).
func (r *Router) Schedule(permanent bool) error {
	t := r.cur
	if t == nil {
		if t = r.Targets[r.Resume]; t == nil {
			return ErrNotInitialised
		}
	}
	return t.Schedule(permanent)
}

// Reset resets every target, so that no partial image of any type survives.
func (r *Router) Reset() error {
	var first error
	for _, t := range r.Targets {
		if err := t.Reset(); err != nil && first == nil {
			first = err
		}
	}
	r.cur, r.kind, r.head = nil, TypeUnknown, r.head[:0]
	return first
}
