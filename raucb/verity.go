package raucb

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
)

// verityBlock is the data and hash block size of RAUC's dm-verity trees.
const verityBlock = 4096

// checkVerity recomputes the dm-verity root hash (format 1, SHA-256, salt
// before each block) of a verity bundle's data — the payload without its
// hash tree — and compares it with the signed one, streaming the data.
func (b *Bundle) checkVerity() error {
	m := b.Manifest
	salt, err := hex.DecodeString(m.VeritySalt)
	if err != nil || len(salt) == 0 {
		return fmt.Errorf("%w: the manifest's verity-salt %q is not hex", ErrFormat, truncate(m.VeritySalt, 80))
	}
	want, err := hex.DecodeString(m.VerityHash)
	if err != nil || len(want) != sha256.Size {
		return fmt.Errorf("%w: the manifest's verity-hash %q is not a SHA-256 in hex", ErrFormat, truncate(m.VerityHash, 80))
	}
	got, err := verityRoot(io.NewSectionReader(b.r, 0, b.PayloadSize-m.VeritySize), salt)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return sigErr("the payload's dm-verity root hash %x is not the signed %x: the bundle was changed after signing", got, want)
	}
	return nil
}

// verityRoot computes the root hash of data, a whole number of blocks.
func verityRoot(data io.Reader, salt []byte) ([]byte, error) {
	hashBlock := func(blk []byte) []byte {
		h := sha256.New()
		h.Write(salt)
		h.Write(blk)
		return h.Sum(nil)
	}
	// Level 0: the data blocks, streamed.
	var level []byte // the level's hash blocks, concatenated
	blk := make([]byte, verityBlock)
	n := 0
	for {
		if _, err := io.ReadFull(data, blk); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("raucb: reading the verity data block %d: %w", n, err)
		}
		level = append(level, hashBlock(blk)...)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: a verity bundle with no data", ErrFormat)
	}
	for {
		if pad := len(level) % verityBlock; pad != 0 {
			level = append(level, make([]byte, verityBlock-pad)...)
		}
		if len(level) == verityBlock {
			return hashBlock(level), nil
		}
		var next []byte
		for off := 0; off < len(level); off += verityBlock {
			next = append(next, hashBlock(level[off:off+verityBlock])...)
		}
		level = next
	}
}
