// Package mcuboot reads, checks and writes MCUboot images: the 32-byte image
// header, the protected and unprotected TLV areas after the body, and the
// trailer at the end of a flash slot that asks the bootloader for a test or
// permanent swap and records that an image was confirmed.
//
// Images are handled as streams and io.ReaderAt values: verifying or creating
// an image needs a small fixed buffer whatever the image size, and a hostile or
// truncated image yields an error, never a panic or an allocation larger than
// one TLV area (at most 64 KiB).
//
// The layout follows MCUboot's bootutil and imgtool (reference/mcuboot.md and
// the vectors in testdata/mcuboot of the shared documents), so that images
// made here are the images a real MCUboot accepts.
//
// It imports only the standard library.
package mcuboot
