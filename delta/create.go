package delta

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
)

// Options tune Create.
type Options struct {
	// Arch names the transform (ParseTransform): "" or "auto" detects it
	// from the base (DetectTransform).
	Arch string
	// Progress, when set, is called as the patch is made with the work
	// done and the work to do (in bytes of the new image, scanned twice).
	Progress func(done, total int64)
}

// Create writes a patch that turns base (its first baseSize bytes) into the
// image read from target, with the transform detected from the base. Both
// images are held in memory while the patch is made (about 10 bytes per
// base byte for the suffix array), which is the cloud's side of the
// bargain: applying needs only a fixed, small amount. Images larger than
// MaxImageSize are refused with ErrTooLarge.
func Create(w io.Writer, base io.ReaderAt, baseSize int64, target io.Reader) (Info, error) {
	return CreateWith(w, base, baseSize, target, Options{})
}

// CreateWith is Create with options.
func CreateWith(w io.Writer, base io.ReaderAt, baseSize int64, target io.Reader, o Options) (Info, error) {
	if baseSize < 0 || baseSize > MaxImageSize {
		return Info{}, fmt.Errorf("%w: base of %d bytes (the limit is %d)", ErrTooLarge, baseSize, MaxImageSize)
	}
	tr, auto, err := ParseTransform(o.Arch)
	if err != nil {
		return Info{}, err
	}
	old := make([]byte, baseSize)
	if n, err := base.ReadAt(old, 0); n < len(old) {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Info{}, fmt.Errorf("delta: reading the base: %w", err)
	}
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(target, MaxImageSize+1))
	if err != nil {
		return Info{}, fmt.Errorf("delta: reading the target: %w", err)
	}
	if n > MaxImageSize {
		return Info{}, fmt.Errorf("%w: target larger than %d bytes", ErrTooLarge, MaxImageSize)
	}
	next := buf.Bytes()
	var det Detection
	if auto {
		det = DetectTransform(old)
	} else {
		det = Detection{Transform: tr, Reason: "chosen"}
		if d, ok := detectELF(old); ok {
			det.ImageBase = d.ImageBase
		} else if tr != TransformNone {
			det.ImageBase = guessBase(old, tr)
		}
	}
	// With a transform, the images are matched with their references'
	// offsets zeroed (normalized), so that code whose calls changed only
	// because code moved still matches.
	a, b := old, next
	if det.Transform != TransformNone {
		a, b = normalize(old, det.Transform), normalize(next, det.Transform)
	}
	patch, info := encodeBest(old, next, diff(a, b, o.Progress), det)
	if _, err := w.Write(patch); err != nil {
		return Info{}, fmt.Errorf("delta: writing the patch: %w", err)
	}
	return info, nil
}

// encodeBest codes the records with the detected transform, with and
// without pointer words, and keeps the smallest patch.
func encodeBest(old, next []byte, recs []record, det Detection) ([]byte, Info) {
	h := Header{Version: Version, Coding: CodingMix, Transform: det.Transform, ImageBase: det.ImageBase}
	if det.Transform == TransformNone {
		p, info := encodeV2(old, next, recs, h, addrMap{})
		info.Detected = det.Reason
		return p, info
	}
	am := buildMap(len(old), recs, 64)
	base, pointers := pointerBase(old, next, recs, am, det.Transform, det.ImageBase)
	h.ImageBase = base
	if pointers {
		h.TransformFlags = FlagPointers
	}
	if det.Transform == TransformAArch64 {
		h.ImageBase = adrpBase(old, next, recs, am, h.ImageBase)
	}
	p, info := encodeV2(old, next, recs, h, am)
	// Unwind tables' self-relative words: kept only if they pay.
	h.TransformFlags |= FlagRelWords
	if p2, info2 := encodeV2(old, next, recs, h, am); len(p2) < len(p) {
		p, info = p2, info2
	}
	info.Detected = det.Reason
	return p, info
}

// encode codes records that turn base into target as a version 1 patch.
func encode(base, target []byte, recs []record) ([]byte, Info) {
	e := newEncoder(base, target, CodingRange)
	info := Info{Header: Header{Version: 1, Coding: CodingRange,
		BaseSize: int64(len(base)), BaseSHA256: sha256.Sum256(base),
		ResultSize: int64(len(target)), ResultSHA256: sha256.Sum256(target)}}
	for _, r := range recs {
		e.record(r)
		info.Records++
		info.Copied += r.copy
		info.Inserted += r.insert
	}
	body := e.rc.finish()
	info.BodySize = int64(len(body))
	info.Changed = e.changed
	return append(appendHeader(make([]byte, 0, HeaderSize+len(body)), info.Header), body...), info
}

// encodeV2 codes records as a version 2 patch with h's transform and the
// address map am.
func encodeV2(base, target []byte, recs []record, h Header, am addrMap) ([]byte, Info) {
	h.BaseSize, h.BaseSHA256 = int64(len(base)), sha256.Sum256(base)
	h.ResultSize, h.ResultSHA256 = int64(len(target)), sha256.Sum256(target)
	e := newEncoder(base, target, h.Coding)
	if h.Coding == CodingMix {
		e.lit = newLitModel()
		e.diff = newDiffModel()
		e.flags = newFlagModel()
		var hh uint32
		e.lit.indexBase(base, 0, &hh)
		e.lit.baseAt = func(pos int64) byte { return base[pos] }
		e.lit.baseSize = int64(len(base))
	}
	if h.Transform != TransformNone {
		e.pred = newPredictor(h, am, bytes.NewReader(base))
		e.writeMap(am)
	}
	info := Info{Header: h}
	for _, r := range recs {
		e.record(r)
		info.Records++
		info.Copied += r.copy
		info.Inserted += r.insert
	}
	body := e.rc.finish()
	info.BodySize = int64(len(body))
	info.Changed = e.changed
	return append(appendHeader(make([]byte, 0, HeaderSizeV2+len(body)), info.Header), body...), info
}

// diff finds the records that turn old into new: bsdiff's scan (Colin
// Percival, "Naive differences of executable code", 2003). It looks for
// long exact matches of new's bytes in old with a suffix array and extends
// each match forwards and backwards while at least half of the bytes agree,
// so that a region whose addresses shifted becomes one copy with sparse
// differences instead of many short matches.
func diff(old, next []byte, progress func(done, total int64)) []record {
	sa := suffixSort(old)
	oldSize, newSize := len(old), len(next)
	var recs []record
	var pendingSeek int64 // seek of records that produce nothing, carried forward
	add := func(seek int64, copyLen, insert int) {
		seek += pendingSeek
		if copyLen == 0 && insert == 0 {
			pendingSeek = seek
			return
		}
		pendingSeek = 0
		recs = append(recs, record{seek: seek, copy: int64(copyLen), insert: int64(insert)})
	}
	var scan, length, pos, lastScan, lastPos, lastOffset int
	var nextSeek int64
	reported := 0
	for scan < newSize {
		if progress != nil && scan-reported >= 1<<16 {
			progress(int64(scan), int64(newSize))
			reported = scan
		}
		oldScore := 0
		scan += length
		for sc := scan; scan < newSize; scan++ {
			length, pos = longestMatch(sa, old, next[scan:])
			for ; sc < scan+length; sc++ {
				if sc+lastOffset < oldSize && old[sc+lastOffset] == next[sc] {
					oldScore++
				}
			}
			if (length == oldScore && length != 0) || length > oldScore+8 {
				break
			}
			if scan+lastOffset < oldSize && old[scan+lastOffset] == next[scan] {
				oldScore--
			}
		}
		if length == oldScore && scan != newSize {
			continue
		}
		// Extend the previous match forwards ...
		s, best, lenF := 0, 0, 0
		for i := 0; lastScan+i < scan && lastPos+i < oldSize; {
			if old[lastPos+i] == next[lastScan+i] {
				s++
			}
			i++
			if s*2-i > best*2-lenF {
				best, lenF = s, i
			}
		}
		// ... and the new one backwards ...
		lenB := 0
		if scan < newSize {
			s, best := 0, 0
			for i := 1; scan >= lastScan+i && pos >= i; i++ {
				if old[pos-i] == next[scan-i] {
					s++
				}
				if s*2-i > best*2-lenB {
					best, lenB = s, i
				}
			}
		}
		// ... and split any overlap where it costs least.
		if lastScan+lenF > scan-lenB {
			overlap := (lastScan + lenF) - (scan - lenB)
			s, best, lenS := 0, 0, 0
			for i := 0; i < overlap; i++ {
				if next[lastScan+lenF-overlap+i] == old[lastPos+lenF-overlap+i] {
					s++
				}
				if next[scan-lenB+i] == old[pos-lenB+i] {
					s--
				}
				if s > best {
					best, lenS = s, i+1
				}
			}
			lenF += lenS - overlap
			lenB -= lenS
		}
		add(nextSeek, lenF, (scan-lenB)-(lastScan+lenF))
		nextSeek = int64((pos - lenB) - (lastPos + lenF))
		lastScan, lastPos, lastOffset = scan-lenB, pos-lenB, pos-scan
	}
	return recs
}

// longestMatch returns the length and position in old of the longest match
// of a prefix of b, by binary search in old's suffix array.
func longestMatch(sa []int32, old, b []byte) (length, pos int) {
	lo, hi := 0, len(old)
	for hi-lo >= 2 {
		mid := lo + (hi-lo)/2
		if bytes.Compare(old[sa[mid]:], b) < 0 {
			lo = mid
		} else {
			hi = mid
		}
	}
	x := matchLen(old[sa[lo]:], b)
	y := matchLen(old[sa[hi]:], b)
	if x > y {
		return x, int(sa[lo])
	}
	return y, int(sa[hi])
}

func matchLen(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
