package delta

import (
	"bufio"
	"fmt"
	"io"
	"math/bits"
)

// The body is coded with an adaptive binary range coder of the kind LZMA
// uses: every decision is a bit coded with an 11-bit probability that adapts
// after each use. It needs no tables beyond the probabilities themselves, so
// the decoder's memory is fixed by the model, whatever the image size.
const (
	probBits  = 11
	probOne   = 1 << probBits
	probInit  = probOne / 2
	moveBits  = 5
	rangeTop  = 1 << 24
	maxIntLen = 40 // longest integer (in bits) the decoder accepts
)

// prob is the probability, in 1/2048ths, that the next bit is 0.
type prob uint16

func initProbs(p []prob) {
	for i := range p {
		p[i] = probInit
	}
}

// rangeEncoder appends the coded body to out.
type rangeEncoder struct {
	low       uint64
	rng       uint32
	cache     byte
	cacheSize int64
	out       []byte
}

func newRangeEncoder() *rangeEncoder { return &rangeEncoder{rng: 0xFFFFFFFF, cacheSize: 1} }

func (e *rangeEncoder) shiftLow() {
	if uint32(e.low) < 0xFF000000 || e.low>>32 != 0 {
		carry := byte(e.low >> 32)
		b := e.cache
		for {
			e.out = append(e.out, b+carry)
			b = 0xFF
			e.cacheSize--
			if e.cacheSize == 0 {
				break
			}
		}
		e.cache = byte(e.low >> 24)
	}
	e.cacheSize++
	e.low = (e.low & 0x00FFFFFF) << 8
}

func (e *rangeEncoder) bit(p *prob, b uint32) {
	bound := (e.rng >> probBits) * uint32(*p)
	if b == 0 {
		e.rng = bound
		*p += (probOne - *p) >> moveBits
	} else {
		e.low += uint64(bound)
		e.rng -= bound
		*p -= *p >> moveBits
	}
	for e.rng < rangeTop {
		e.rng <<= 8
		e.shiftLow()
	}
}

// bit2 codes b with the mean of two probabilities and updates both.
func (e *rangeEncoder) bit2(p, q *prob, b uint32) {
	bound := (e.rng >> probBits) * ((uint32(*p) + uint32(*q)) >> 1)
	if b == 0 {
		e.rng = bound
		*p += (probOne - *p) >> moveBits
		*q += (probOne - *q) >> moveBits
	} else {
		e.low += uint64(bound)
		e.rng -= bound
		*p -= *p >> moveBits
		*q -= *q >> moveBits
	}
	for e.rng < rangeTop {
		e.rng <<= 8
		e.shiftLow()
	}
}

// tree2 is tree with bit2.
func (e *rangeEncoder) tree2(p, q []prob, n int, v uint32) {
	m := uint32(1)
	for i := n - 1; i >= 0; i-- {
		b := v >> uint(i) & 1
		e.bit2(&p[m], &q[m], b)
		m = m<<1 | b
	}
}

// tree codes the n low bits of v, most significant first, with the 1<<n
// probabilities of p.
func (e *rangeEncoder) tree(p []prob, n int, v uint32) {
	m := uint32(1)
	for i := n - 1; i >= 0; i-- {
		b := v >> uint(i) & 1
		e.bit(&p[m], b)
		m = m<<1 | b
	}
}

func (e *rangeEncoder) finish() []byte {
	for range 5 {
		e.shiftLow()
	}
	return e.out
}

// rangeDecoder reads the body from a byte stream. A read error, including
// the end of the body, is kept in err and reads as zero bytes from then on,
// so that the hot paths need no error checks; callers look at err at each
// record boundary, and every loop is bounded by sizes already validated.
type rangeDecoder struct {
	r    *bufio.Reader
	code uint32
	rng  uint32
	n    int64 // body bytes consumed
	max  int64 // body size from the header
	err  error
}

func (d *rangeDecoder) reset(r *bufio.Reader, size int64) {
	*d = rangeDecoder{r: r, rng: 0xFFFFFFFF, max: size}
	if size < 5 {
		d.err = fmt.Errorf("%w: body of %d bytes is shorter than the coder's 5", ErrCorrupt, size)
		return
	}
	if b := d.readByte(); b != 0 && d.err == nil {
		d.err = fmt.Errorf("%w: body does not start with a zero byte", ErrCorrupt)
		return
	}
	for range 4 {
		d.code = d.code<<8 | uint32(d.readByte())
	}
}

func (d *rangeDecoder) readByte() byte {
	if d.err != nil {
		return 0
	}
	if d.n >= d.max {
		d.err = fmt.Errorf("%w: body needs more than the %d bytes the header declares", ErrCorrupt, d.max)
		return 0
	}
	b, err := d.r.ReadByte()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		d.err = fmt.Errorf("%w: patch ends after %d of %d body bytes: %w", ErrCorrupt, d.n, d.max, err)
		return 0
	}
	d.n++
	return b
}

func (d *rangeDecoder) bit(p *prob) uint32 {
	bound := (d.rng >> probBits) * uint32(*p)
	var b uint32
	if d.code < bound {
		d.rng = bound
		*p += (probOne - *p) >> moveBits
	} else {
		d.code -= bound
		d.rng -= bound
		*p -= *p >> moveBits
		b = 1
	}
	for d.rng < rangeTop {
		d.rng <<= 8
		d.code = d.code<<8 | uint32(d.readByte())
	}
	return b
}

func (d *rangeDecoder) bit2(p, q *prob) uint32 {
	bound := (d.rng >> probBits) * ((uint32(*p) + uint32(*q)) >> 1)
	var b uint32
	if d.code < bound {
		d.rng = bound
		*p += (probOne - *p) >> moveBits
		*q += (probOne - *q) >> moveBits
	} else {
		d.code -= bound
		d.rng -= bound
		*p -= *p >> moveBits
		*q -= *q >> moveBits
		b = 1
	}
	for d.rng < rangeTop {
		d.rng <<= 8
		d.code = d.code<<8 | uint32(d.readByte())
	}
	return b
}

func (d *rangeDecoder) tree2(p, q []prob, n int) uint32 {
	m := uint32(1)
	for range n {
		m = m<<1 | d.bit2(&p[m], &q[m])
	}
	return m - 1<<uint(n)
}

func (d *rangeDecoder) tree(p []prob, n int) uint32 {
	m := uint32(1)
	for range n {
		m = m<<1 | d.bit(&p[m])
	}
	return m - 1<<uint(n)
}

// intModel codes unsigned integers as their bit length (a 6-bit tree) and
// then the bits below the leading one; the top mantissa bits have their own
// probabilities per length, the rest share one per length.
type intModel struct {
	length [64]prob
	mant   [maxIntLen + 1][4]prob
}

func (m *intModel) init() {
	initProbs(m.length[:])
	for i := range m.mant {
		initProbs(m.mant[i][:])
	}
}

func mantCtx(n, i int) int { return min(n-2-i, 3) }

func (m *intModel) encode(e *rangeEncoder, v uint64) {
	n := bits.Len64(v)
	e.tree(m.length[:], 6, uint32(n))
	for i := n - 2; i >= 0; i-- {
		e.bit(&m.mant[n][mantCtx(n, i)], uint32(v>>uint(i)&1))
	}
}

// decode returns the integer, or ok false when its length is beyond
// maxIntLen (only a corrupt body says so).
func (m *intModel) decode(d *rangeDecoder) (v uint64, ok bool) {
	n := int(d.tree(m.length[:], 6))
	if n > maxIntLen {
		return 0, false
	}
	if n == 0 {
		return 0, true
	}
	v = 1
	for i := n - 2; i >= 0; i-- {
		v = v<<1 | uint64(d.bit(&m.mant[n][mantCtx(n, i)]))
	}
	return v, true
}
