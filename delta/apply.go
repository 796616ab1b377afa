package delta

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
)

// Buffer sizes of Apply; with the model they are all the memory it uses.
const (
	patchBufSize  = 4 << 10
	baseBufSize   = 16 << 10
	resultBufSize = 16 << 10
)

// Apply rebuilds the result image from base, the image the patch was made
// from, and writes it to w. It reads the patch once, from its header to the
// end of its body and no further, and reads base at random positions within
// its first Header.BaseSize bytes (a longer base, such as a flash slot, is
// fine). Its memory use is fixed (just under 1 MiB for a version 2 patch, about
// 190 KiB for a version 1 one), whatever the images' sizes.
//
// Apply checks base's size and SHA-256 before it writes anything: a base
// that is not the patch's returns a *MismatchError matching ErrBaseMismatch.
// It never writes more than Header.ResultSize bytes, and checks the result's
// SHA-256 at the end: a *MismatchError matching ErrResultMismatch means what
// was written must not be used. Other errors wrap ErrNotPatch,
// ErrUnsupported or ErrCorrupt, or are I/O errors of base, patch or w.
func Apply(base io.ReaderAt, patch io.Reader, w io.Writer) (Info, error) {
	h, err := ReadHeader(patch)
	if err != nil {
		return Info{}, err
	}
	a := &applier{info: Info{Header: h}, base: base, w: w, baseBuf: make([]byte, baseBufSize)}
	if h.Coding == CodingMix {
		a.lit = newLitModel()
		a.diff = newDiffModel()
		a.flags = newFlagModel()
		a.lit.baseAt = a.matchByte
		a.lit.baseSize = h.BaseSize
	}
	if err := a.checkBase(); err != nil {
		return a.info, err
	}
	a.out = make([]byte, 0, resultBufSize)
	a.hash = sha256.New()
	a.rd.reset(bufio.NewReaderSize(io.LimitReader(patch, h.BodySize), patchBufSize), h.BodySize)
	a.m.init(h.Coding)
	if h.Version >= 2 && h.Transform != TransformNone {
		if err := a.readMap(); err != nil {
			return a.info, err
		}
		a.pr = newPredictor(h, a.amap, base)
	}
	if err := a.decode(); err != nil {
		return a.info, err
	}
	if err := a.flush(); err != nil {
		return a.info, err
	}
	var sum [32]byte
	a.hash.Sum(sum[:0])
	if a.tp != h.ResultSize || sum != h.ResultSHA256 {
		return a.info, &MismatchError{Result: true, Size: a.tp, SHA256: sum, Want: h.ResultSize, WantSum: h.ResultSHA256}
	}
	return a.info, nil
}

type applier struct {
	info Info
	rd   rangeDecoder
	m    model
	base io.ReaderAt
	w    io.Writer
	hash hash.Hash

	baseBuf []byte // a window of base starting at baseOff
	baseOff int64
	baseLen int

	pr    *predictor // version 2 with a transform: predicts copies
	amap  addrMap
	chunk []byte // predicted bytes not used yet

	lit   *litModel  // coding 2: literals by context mixing
	diff  *diffModel // coding 2: differences by context mixing
	flags *flagModel // coding 2: which bytes of a copy changed
	last4 uint32     // the last four result bytes
	mbuf  [64]byte   // the match model's window on the base
	moff  int64
	mlen  int
	merr  error

	out     []byte // result bytes not yet written
	lastOut byte
	bp, tp  int64 // positions in base and result
}

// checkBase hashes the first BaseSize bytes of base.
func (a *applier) checkBase() error {
	h := a.info.Header
	sum := sha256.New()
	var n int64
	var hh uint32
	for n < h.BaseSize {
		k, err := a.base.ReadAt(a.baseBuf[:min(int64(len(a.baseBuf)), h.BaseSize-n)], n)
		sum.Write(a.baseBuf[:k])
		if a.lit != nil {
			a.lit.indexBase(a.baseBuf[:k], n, &hh)
		}
		n += int64(k)
		if err != nil && (err != io.EOF || n < h.BaseSize) {
			if errors.Is(err, io.EOF) {
				return &MismatchError{Size: n, Want: h.BaseSize, WantSum: h.BaseSHA256}
			}
			return fmt.Errorf("delta: reading the base at %d: %w", n, err)
		}
	}
	var got [32]byte
	sum.Sum(got[:0])
	if got != h.BaseSHA256 {
		return &MismatchError{Size: n, SHA256: got, Want: h.BaseSize, WantSum: h.BaseSHA256}
	}
	return nil
}

func (a *applier) corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: record %d at result offset %d: %s", ErrCorrupt, a.info.Records, a.tp, fmt.Sprintf(format, args...))
}

func (a *applier) decode() error {
	h := &a.info.Header
	m, rd := &a.m, &a.rd
	for a.tp < h.ResultSize {
		if rd.err != nil {
			return rd.err
		}
		// Seek.
		if rd.bit(&m.seekNonZero) == 1 {
			neg := rd.bit(&m.seekNeg) == 1
			s, ok := m.seekLen.decode(rd)
			if !ok || s > MaxImageSize {
				return a.corrupt("seek out of range")
			}
			seek := int64(s)
			if neg {
				seek = -seek
			}
			if nb := a.bp + seek; nb < 0 || nb > h.BaseSize {
				return a.corrupt("seek to %d, outside the base's %d bytes", nb, h.BaseSize)
			}
			a.bp += seek
		}
		// Copy with differences.
		c, ok := m.copyLen.decode(rd)
		if !ok || c > uint64(h.BaseSize-a.bp) || c > uint64(h.ResultSize-a.tp) {
			return a.corrupt("copy of %d bytes from base offset %d does not fit", c, a.bp)
		}
		if a.pr != nil {
			a.pr.begin(a.bp, a.tp, int64(c))
			a.chunk = nil
		}
		if err := a.copyRegion(int64(c)); err != nil {
			return err
		}
		// Insert.
		n, ok := m.insertLen.decode(rd)
		if !ok || n > uint64(h.ResultSize-a.tp) {
			return a.corrupt("insert of %d bytes goes past the result's %d bytes", n, h.ResultSize)
		}
		if c == 0 && n == 0 {
			return a.corrupt("empty record")
		}
		if a.lit != nil {
			a.lit.hist = a.last4
		}
		for range n {
			if rd.err != nil {
				return rd.err
			}
			if a.merr != nil {
				return a.merr
			}
			if a.lit != nil {
				if err := a.emit(a.lit.decode(rd, int(a.tp&3))); err != nil {
					return err
				}
				continue
			}
			b := byte(rd.tree2(m.lit1.literal[m.prev>>4][:], m.lit1.literal1[m.prev][:], 8))
			m.prev = b
			if err := a.emit(b); err != nil {
				return err
			}
		}
		a.info.Inserted += int64(n)
		a.info.Records++
	}
	if rd.err != nil {
		return rd.err
	}
	if rd.n != h.BodySize {
		return fmt.Errorf("%w: result complete after %d of the body's %d bytes", ErrCorrupt, rd.n, h.BodySize)
	}
	return nil
}

// copyRegion decodes a copy of n bytes: runs of unchanged base bytes, each
// followed by one changed byte.
func (a *applier) copyRegion(n int64) error {
	m, rd := &a.m, &a.rd
	if a.flags != nil {
		return a.copyFlags(n)
	}
	state := gapStart
	end := a.tp + n
	for a.tp < end {
		g, ok := m.gap[int(a.tp&3)*3+state].decode(rd)
		if !ok || g > uint64(end-a.tp) {
			return a.corrupt("run of %d unchanged bytes goes past the copy's end", g)
		}
		if rd.err != nil {
			return rd.err
		}
		if err := a.copyBase(int64(g)); err != nil {
			return err
		}
		if a.tp == end {
			break
		}
		state = gapIsolated
		if g == 0 {
			state = gapRun
		}
		lane := int(a.tp & 3)
		b, err := a.baseByte()
		if err != nil {
			return err
		}
		v := m.last[lane]
		if rd.bit(&m.same[lane*3+state]) == 1 {
			v = byte(rd.tree(m.value[lane][:], 8))
			m.last[lane] = v
		}
		a.bp++
		if a.pr != nil {
			a.chunk = a.chunk[1:]
		}
		if err := a.emit(b + v); err != nil {
			return err
		}
		a.info.Changed++
	}
	a.info.Copied += n
	if n > 0 {
		m.prev = a.lastOut
	}
	return nil
}

// window returns base bytes from a.bp on, at most to the end of the base.
func (a *applier) window() ([]byte, error) {
	if a.bp >= a.baseOff && a.bp < a.baseOff+int64(a.baseLen) {
		return a.baseBuf[a.bp-a.baseOff : a.baseLen], nil
	}
	want := min(int64(len(a.baseBuf)), a.info.BaseSize-a.bp)
	k, err := a.base.ReadAt(a.baseBuf[:want], a.bp)
	if int64(k) < want {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("delta: reading the base at %d: %w", a.bp, err)
	}
	a.baseOff, a.baseLen = a.bp, k
	return a.baseBuf[:k], nil
}

func (a *applier) baseByte() (byte, error) {
	if a.pr != nil {
		if err := a.fill(); err != nil {
			return 0, err
		}
		return a.chunk[0], nil
	}
	b, err := a.window()
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

// fill makes sure a.chunk has a predicted byte.
func (a *applier) fill() error {
	if len(a.chunk) > 0 {
		return nil
	}
	b, err := a.pr.next()
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return a.corrupt("copy goes past its predicted bytes")
	}
	a.chunk = b
	return nil
}

// copyBase writes the next n base bytes (predicted bytes with a transform)
// to the result unchanged.
func (a *applier) copyBase(n int64) error {
	for n > 0 && a.pr != nil {
		if err := a.fill(); err != nil {
			return err
		}
		k := min(int64(len(a.chunk)), n)
		if err := a.emitBytes(a.chunk[:k]); err != nil {
			return err
		}
		a.chunk = a.chunk[k:]
		a.bp += k
		n -= k
	}
	for n > 0 {
		b, err := a.window()
		if err != nil {
			return err
		}
		b = b[:min(int64(len(b)), n)]
		if err := a.emitBytes(b); err != nil {
			return err
		}
		a.bp += int64(len(b))
		n -= int64(len(b))
	}
	return nil
}

func (a *applier) emit(b byte) error {
	a.out = append(a.out, b)
	a.tp++
	a.lastOut = b
	a.last4 = a.last4<<8 | uint32(b)
	if len(a.out) == cap(a.out) {
		return a.flush()
	}
	return nil
}

func (a *applier) emitBytes(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	a.lastOut = p[len(p)-1]
	for _, c := range p[max(len(p)-4, 0):] {
		a.last4 = a.last4<<8 | uint32(c)
	}
	for len(p) > 0 {
		k := min(len(p), cap(a.out)-len(a.out))
		a.out = append(a.out, p[:k]...)
		a.tp += int64(k)
		p = p[k:]
		if len(a.out) == cap(a.out) {
			if err := a.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *applier) flush() error {
	if len(a.out) == 0 {
		return nil
	}
	a.hash.Write(a.out)
	_, err := a.w.Write(a.out)
	a.out = a.out[:0]
	if err != nil {
		return fmt.Errorf("delta: writing the result: %w", err)
	}
	return nil
}

// readMap decodes the address map at the start of a version 2 body.
func (a *applier) readMap() error {
	m, rd := &a.m, &a.rd
	n, ok := m.mapCount.decode(rd)
	if !ok || n > maxMapEntries {
		return fmt.Errorf("%w: address map of %d entries (the limit is %d)", ErrCorrupt, n, maxMapEntries)
	}
	a.amap = addrMap{start: make([]uint32, n), dlt: make([]int32, n)}
	var start, dl int64
	for k := range int(n) {
		g, ok := m.mapGap.decode(rd)
		if !ok || (k > 0 && g == 0) || start+int64(g) >= max(a.info.BaseSize, 1) {
			return fmt.Errorf("%w: address map entry %d starts past the base", ErrCorrupt, k)
		}
		neg := rd.bit(&m.mapSign) == 1
		d, ok := m.mapDelta.decode(rd)
		if !ok || d > 2*MaxImageSize {
			return fmt.Errorf("%w: address map entry %d moves by more than the images' size", ErrCorrupt, k)
		}
		if neg {
			dl -= int64(d)
		} else {
			dl += int64(d)
		}
		if dl < -MaxImageSize || dl > MaxImageSize {
			return fmt.Errorf("%w: address map entry %d moves by more than the images' size", ErrCorrupt, k)
		}
		start += int64(g)
		a.amap.start[k], a.amap.dlt[k] = uint32(start), int32(dl)
		if rd.err != nil {
			return rd.err
		}
	}
	return nil
}

// matchByte returns the base byte at pos for the match model, through a
// small window; a read error is kept for decode to report.
func (a *applier) matchByte(pos int64) byte {
	if pos < a.moff || pos >= a.moff+int64(a.mlen) {
		want := min(int64(len(a.mbuf)), a.info.BaseSize-pos)
		k, err := a.base.ReadAt(a.mbuf[:want], pos)
		if int64(k) < want {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			if a.merr == nil {
				a.merr = fmt.Errorf("delta: reading the base at %d: %w", pos, err)
			}
			a.mlen = 0
			return 0
		}
		a.moff, a.mlen = pos, k
	}
	return a.mbuf[pos-a.moff]
}

// copyFlags decodes a copy of n bytes in coding 2: for each byte a flag
// "changed", and for a changed byte its difference from the predicted byte.
func (a *applier) copyFlags(n int64) error {
	rd := &a.rd
	state := gapIsolated
	for end := a.tp + n; a.tp < end; {
		if rd.err != nil {
			return rd.err
		}
		b, err := a.baseByte()
		if err != nil {
			return err
		}
		lane := int(a.tp & 3)
		if a.flags.code(nil, rd, 0, lane, b) != 0 {
			b += a.diff.code(nil, rd, 0, int(a.tp&7), b, a.lastOut, state)
			a.info.Changed++
			state = gapRun
		} else {
			state = gapIsolated
		}
		a.bp++
		if a.pr != nil {
			a.chunk = a.chunk[1:]
		}
		if err := a.emit(b); err != nil {
			return err
		}
	}
	a.info.Copied += n
	if n > 0 {
		a.m.prev = a.lastOut
	}
	return nil
}
