// Package delta is awsfota's binary patch format for firmware: Create turns
// an old image (the base, the one the device runs) and a new one into a
// patch, and Apply rebuilds the new image from the base and the patch.
//
// A patch is a fixed header — magic, format version, coding, the base's and
// the result's size and SHA-256, the body's size and a CRC of the header —
// followed by a body of bsdiff-style records: copy-with-difference from the
// base (the differences of shifted addresses and changed constants are sparse
// and coded as gaps and values), bytes inserted as they are, and a seek in the
// base. The whole body is one stream coded by an adaptive binary range coder,
// so Apply reads the patch once, from any io.Reader, and needs only random
// access to the base and a fixed amount of memory (about 200 KiB) whatever
// the size of the images. docs/delta.md specifies the format.
//
// Apply checks the base's SHA-256 before it writes anything and the
// result's at the end; a patch that does not fit the base is refused with
// ErrBaseMismatch, which devices report as the job failure reason
// base_mismatch.
//
// delta is a format package shared by the device and the cloud: it imports
// only the standard library.
package delta
