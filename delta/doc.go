// Package delta is awsfota's binary patch format for firmware: Create turns
// an old image (the base, the one the device runs) and a new one into a
// patch, and Apply rebuilds the new image from the base and the patch.
//
// A patch is a fixed header — magic, format version, coding, the base's and
// the result's size and SHA-256, the body's size, in version 2 the transform
// and the image's load address, and a CRC of the header — followed by a body
// of bsdiff-style records: copy-with-difference from the base, bytes
// inserted as they are, and a seek in the base. Version 2 patches predict
// the copied bytes with a transform for the image's instruction set
// (Thumb-2, A32, AArch64, RISC-V, x86-64): the branches, calls, address
// computations and pointers of the base are re-encoded for where an address
// map (at the start of the body) says the result puts their code and their
// targets, so that code that merely moved costs almost nothing; only the
// difference from the prediction is coded. The body is one stream of an
// adaptive binary arithmetic coder (context mixing for inserted bytes), so
// Apply reads the patch once, from any io.Reader, and needs only random
// access to the base and a fixed amount of memory (under 1 MiB) whatever the
// size of the images. Version 1 patches still apply. docs/delta.md
// specifies the format.
//
// Apply checks the base's SHA-256 before it writes anything and the
// result's at the end; a patch that does not fit the base is refused with
// ErrBaseMismatch, which devices report as the job failure reason
// base_mismatch.
//
// delta is a format package shared by the device and the cloud: it imports
// only the standard library.
package delta
