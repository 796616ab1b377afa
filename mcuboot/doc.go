// Package mcuboot reads, checks and writes MCUboot images: the 32-byte image
// header, the protected and unprotected TLV areas after the body, and the
// trailer at the end of a flash slot that asks the bootloader for a test or
// permanent swap and records that an image was confirmed.
//
// Images are signed and verified as MCUboot and imgtool do it: ECDSA P-256
// (DER), Ed25519 (over the SHA-256) and RSA-2048/3072 PSS, the key named by a
// KEYHASH or PUBKEY TLV, a security counter (SEC_CNT) in the protected area.
// Verify is as strict as MCUboot's bootloader: a signature counts only when
// the key TLV before it names a trusted key. Keys are read from and written to
// PEM as imgtool does (PKCS#8 private keys, SubjectPublicKeyInfo public keys).
//
// Images are handled as streams and io.ReaderAt values: verifying or creating
// an image needs a small fixed buffer whatever the image size, and a hostile or
// truncated image yields an error, never a panic or an allocation larger than
// one TLV area (at most 64 KiB).
//
// The layout follows MCUboot's bootutil and imgtool (reference/mcuboot.md and
// the imgtool vectors in testdata/mcuboot, which the tests check every image,
// key and failure against), so that images made here are the images a real
// MCUboot accepts.
//
// It imports only the standard library.
package mcuboot
