package delta

// Context mixing for the bytes a version 2 patch stores itself (coding 2,
// CodingMix): each bit of a byte is predicted by several adaptive models,
// each looking at a different context, and their predictions are combined
// by a mixer that learns which model to trust (logistic mixing, as in
// Matt Mahoney's lpaq). Everything is integer arithmetic, so the encoder
// and every decoder compute exactly the same probabilities.

// squash maps a stretched probability d (-2047..2047, ln(p/(1-p)) × 256)
// to a 12-bit probability.
func squash(d int32) int32 {
	if d > 2047 {
		return 4095
	}
	if d < -2047 {
		return 1
	}
	w := d & 127
	i := (d >> 7) + 16
	return (squashTab[i]*(128-w) + squashTab[i+1]*w + 64) >> 7
}

var squashTab = [33]int32{1, 2, 3, 6, 10, 16, 27, 45, 73, 120, 194, 310, 488, 747, 1101, 1546,
	2047, 2549, 2994, 3348, 3607, 3785, 3901, 3975, 4022, 4050, 4068, 4079, 4085, 4089, 4092, 4093, 4094}

// stretchTab is squash's inverse: stretchTab[p] is the smallest d with
// squash(d) ≥ p.
var stretchTab = func() (t [4096]int16) {
	pi := int32(0)
	for x := int32(-2047); x <= 2047; x++ {
		v := squash(x)
		for j := pi; j <= v; j++ {
			t[j] = int16(x)
		}
		pi = v + 1
	}
	for j := pi; j < 4096; j++ {
		t[j] = 2047
	}
	return t
}()

// Literal model sizes: four context tables of 2^16 16-bit probabilities.
const (
	litBits   = 16
	litTables = 7             // context tables
	litInputs = litTables + 2 // the tables, the match model and a bias
	litSmall  = 14            // size bits of the tables after order 3
	// The match model's index of the base: the position after each
	// 4-byte string, by a hash of the string.
	matchBits = 15
	litSets   = 4 * 8
)

// litModel predicts the bits of literal bytes from order 0 (with the
// byte's position in its 4-byte word), order 1, order 2 and order 3
// contexts.
type litModel struct {
	t    [litTables][]uint16 // order 0 has 1024 entries, orders 1-3 1<<litBits, the rest 1<<litSmall
	w    [litSets][litInputs]int32
	hist uint32 // the last four result bytes, the latest in the low byte

	idx [litTables]uint32
	st  [litInputs]int32
	pr  int32

	// Match model: where the last four result bytes were last seen in
	// the base, and how many bytes have matched since.
	index    [1 << matchBits]uint32 // base position + 1, or 0
	baseAt   func(pos int64) byte   // reads the base
	baseSize int64
	mptr     int64 // base position of the predicted byte; -1: none
	mlen     int   // bytes predicted right in a row
	mbyte    uint32
	mbit     int32      // expected bit: 0, 1, or -1 for none
	msm      [16]uint16 // P(expected bit is right) by min(mlen, 15)
}

func matchHash(h uint32) uint32 { return h * 0x9e3779b1 >> (32 - matchBits) }

// indexBase adds a chunk of the base, read in order from its start, to the
// match model's index; h carries the last four bytes across chunks.
func (m *litModel) indexBase(chunk []byte, off int64, h *uint32) {
	for i, c := range chunk {
		if off+int64(i) >= 4 {
			m.index[matchHash(*h)] = uint32(off + int64(i) + 1)
		}
		*h = *h<<8 | uint32(c)
	}
}

// startByte looks the match up before a literal byte.
func (m *litModel) startByte() {
	if m.baseAt == nil {
		return
	}
	if m.mptr < 0 {
		if p := m.index[matchHash(m.hist)]; p != 0 {
			m.mptr, m.mlen = int64(p-1), 0
		}
	}
	if m.mptr >= 0 {
		m.mbyte = uint32(m.baseAt(m.mptr)) | 0x100
	}
}

// endByte follows or drops the match after a literal byte c.
func (m *litModel) endByte(c byte) {
	if m.mptr < 0 {
		return
	}
	if m.mbyte&0xff == uint32(c) {
		m.mlen++
		m.mptr++
		if m.mptr >= m.baseSize {
			m.mptr = -1
		}
	} else {
		m.mptr, m.mlen = -1, 0
	}
}

func newLitModel() *litModel {
	m := &litModel{}
	for i := range m.t {
		switch {
		case i == 0:
			m.t[i] = make([]uint16, 4<<8)
		case i < 4:
			m.t[i] = make([]uint16, 1<<litBits)
		default:
			m.t[i] = make([]uint16, 1<<litSmall)
		}
		fillHalf(m.t[i][:])
	}
	for i := range m.w {
		for j := range m.w[i] {
			m.w[i][j] = 1 << 14
		}
	}
	for i := range m.msm {
		m.msm[i] = 3 << 14
	}
	m.mptr = -1
	return m
}

// ctx computes the tables' indexes for the next bit; c0 is the bits of
// the byte seen so far with a leading 1; lane is the result offset mod 4.
func (m *litModel) ctx(c0 uint32, lane int) {
	h := m.hist
	m.idx[0] = uint32(lane)<<8 | c0
	m.idx[1] = (h&0xff)<<8 | c0
	m.idx[2] = ((h&0xffff)*0x2f0b4ed3>>16 ^ c0*0x9e5) & (1<<litBits - 1)
	m.idx[3] = ((h&0xffffff)*0x6f4f2a45>>15 ^ c0*0x3f1b) & (1<<litBits - 1)
	// The same lane of the word before; the two bytes before that one
	// (skipping the latest); the last four bytes.
	m.idx[4] = smallHash(1<<16|uint32(lane)<<8|h>>24, c0)
	m.idx[5] = smallHash(2<<16|h>>8&0xffff, c0)
	m.idx[6] = smallHash(h*0x2c9277b5+3, c0)
	m.mbit = -1
	if m.mptr >= 0 {
		// The bits so far agree with the expected byte's: expect its next.
		n := bitsLen(c0) - 1
		if m.mbyte>>(8-n) == c0 {
			m.mbit = int32(m.mbyte>>(7-n)) & 1
		}
	}
}

func smallHash(k, c0 uint32) uint32 {
	return (k*0x9e3779b1>>(32-litSmall) ^ c0*0x2f1) & (1<<litSmall - 1)
}

func bitsLen(c0 uint32) int {
	n := 0
	for c0 != 0 {
		n++
		c0 >>= 1
	}
	return n
}

// p returns the mixed probability (12 bits) that the next bit is 1.
func (m *litModel) p(set int) int32 {
	var dot int64
	for i := range litTables {
		m.st[i] = int32(stretchTab[m.t[i][m.idx[i]]>>4])
	}
	m.st[litTables] = 0
	if m.mbit >= 0 {
		st := int32(stretchTab[m.msm[min(m.mlen, 15)]>>4])
		if m.mbit == 0 {
			st = -st
		}
		m.st[litTables] = st
	}
	m.st[litTables+1] = 256
	w := &m.w[set]
	for i := range litInputs {
		dot += int64(m.st[i]) * int64(w[i])
	}
	m.pr = squash(int32(dot >> 16))
	return m.pr
}

func (m *litModel) update(set int, bit uint32) {
	err := (int32(bit<<12) - m.pr) * 6
	w := &m.w[set]
	for i := range litInputs {
		w[i] += (m.st[i]*err + 0x8000) >> 16
	}
	for i := range litTables {
		adaptPacked(&m.t[i][m.idx[i]], bit)
	}
	if m.mbit >= 0 {
		p := &m.msm[min(m.mlen, 15)]
		if uint32(m.mbit) == bit {
			*p += (0xffff - *p) >> 5
		} else {
			*p -= *p >> 5
		}
	}
}

func (m *litModel) push(b byte) { m.hist = m.hist<<8 | uint32(b) }

// clampP keeps a 12-bit probability away from 0 and 1.
func clampP(p int32) uint32 { return uint32(min(max(p, 1), 4095)) }

func (m *litModel) encode(e *rangeEncoder, c byte, lane int) {
	m.startByte()
	c0 := uint32(1)
	for i := 7; i >= 0; i-- {
		bit := uint32(c) >> uint(i) & 1
		m.ctx(c0, lane)
		set := lane*8 + 7 - i
		e.bitP(clampP(m.p(set)), bit)
		m.update(set, bit)
		c0 = c0<<1 | bit
	}
	m.endByte(c)
	m.push(c)
}

func (m *litModel) decode(d *rangeDecoder, lane int) byte {
	m.startByte()
	c0 := uint32(1)
	for i := 7; i >= 0; i-- {
		m.ctx(c0, lane)
		set := lane*8 + 7 - i
		bit := d.bitP(clampP(m.p(set)))
		m.update(set, bit)
		c0 = c0<<1 | bit
	}
	c := byte(c0)
	m.endByte(c)
	m.push(c)
	return c
}

// bitP codes b with probability p1/4096 that it is 1, without adapting.
func (e *rangeEncoder) bitP(p1 uint32, b uint32) {
	bound := (e.rng >> 12) * (4096 - p1)
	if b == 0 {
		e.rng = bound
	} else {
		e.low += uint64(bound)
		e.rng -= bound
	}
	for e.rng < rangeTop {
		e.rng <<= 8
		e.shiftLow()
	}
}

func (d *rangeDecoder) bitP(p1 uint32) uint32 {
	bound := (d.rng >> 12) * (4096 - p1)
	var b uint32
	if d.code < bound {
		d.rng = bound
	} else {
		d.code -= bound
		d.rng -= bound
		b = 1
	}
	for d.rng < rangeTop {
		d.rng <<= 8
		d.code = d.code<<8 | uint32(d.readByte())
	}
	return b
}

// Difference model sizes: the changed bytes inside copies are few, so its
// tables are small.
const (
	diffBits   = 13
	diffInputs = 7 // five models, the lane's previous difference and a bias
	diffSets   = 2 * 3 * 8
)

// diffModel predicts the bits of the differences (result byte minus
// predicted byte, mod 256) of the changed bytes inside copies, in coding 2.
// Its contexts: the byte's lane (offset mod 4) alone; the lane and the
// lane's previous difference (an address that moved changes the same byte
// of every word by the same amount); the lane and the predicted byte; the
// lane and the result byte before; the previous difference and whether the
// byte before was changed too.
type diffModel struct {
	t0   [4 << 8]uint16
	t    [diffInputs - 3][1 << diffBits]uint16
	w    [diffSets][diffInputs]int32
	last [4]byte       // previous difference per lane
	prev byte          // previous difference
	same [4 * 3]uint16 // P(the lane's previous difference again) by lane and state

	idx [diffInputs - 2]uint32
	st  [diffInputs]int32
	pr  int32
}

func newDiffModel() *diffModel {
	m := &diffModel{}
	fillHalf(m.t0[:])
	for i := range m.t {
		fillHalf(m.t[i][:])
	}
	for i := range m.w {
		for j := range m.w[i] {
			m.w[i][j] = 1 << 14
		}
		m.w[i][diffInputs-2] = 1 << 16
	}
	for i := range m.same {
		m.same[i] = 1 << 15
	}
	return m
}

func diffHash(k, c0 uint32) uint32 {
	return (k*0x9e3779b1>>(32-diffBits) ^ c0*0x2f1) & (1<<diffBits - 1)
}

// code codes (or, with e nil, decodes) one difference: lane8 is the
// result offset mod 8, pred the predicted byte, before the result byte
// before it, state the gap state (gapIsolated or gapRun).
func (m *diffModel) code(e *rangeEncoder, d *rangeDecoder, v byte, lane8 int, pred, before byte, state int) byte {
	lane := lane8 & 3
	l := uint32(lane)
	k1 := 1<<24 | l<<8 | uint32(m.last[lane])
	k2 := 2<<24 | l<<8 | uint32(pred)
	k3 := 3<<24 | l<<8 | uint32(before)
	k4 := 4<<24 | uint32(state)<<8 | uint32(m.prev)
	sp := &m.same[lane*3+state]
	exp := uint32(m.last[lane]) | 0x100
	agree := true
	c0 := uint32(1)
	for i := 7; i >= 0; i-- {
		agree = agree && exp>>(i+1) == c0
		m.idx[0] = l<<8 | c0
		m.idx[1] = diffHash(k1, c0)
		m.idx[2] = diffHash(k2, c0)
		m.idx[3] = diffHash(k3, c0)
		m.idx[4] = diffHash(k4, c0)
		m.st[0] = int32(stretchTab[m.t0[m.idx[0]]>>4])
		for j := range diffInputs - 3 {
			m.st[j+1] = int32(stretchTab[m.t[j][m.idx[j+1]]>>4])
		}
		m.st[diffInputs-2] = 0
		set := (state*8 + 7 - i) * 2
		if agree {
			st := int32(stretchTab[*sp>>4])
			if exp>>i&1 == 0 {
				st = -st
			}
			m.st[diffInputs-2] = st
			set++
		}
		m.st[diffInputs-1] = 256
		w := &m.w[set]
		var dot int64
		for j := range diffInputs {
			dot += int64(m.st[j]) * int64(w[j])
		}
		m.pr = squash(int32(dot >> 16))
		var bit uint32
		if e != nil {
			bit = uint32(v) >> uint(i) & 1
			e.bitP(clampP(m.pr), bit)
		} else {
			bit = d.bitP(clampP(m.pr))
		}
		err := (int32(bit<<12) - m.pr) * 10
		for j := range diffInputs {
			w[j] += (m.st[j]*err + 0x8000) >> 16
		}
		adaptPacked(&m.t0[m.idx[0]], bit)
		for j := range diffInputs - 3 {
			adaptPacked(&m.t[j][m.idx[j+1]], bit)
		}
		if agree {
			adaptPacked(sp, bit^(exp>>i&1)^1)
		}
		c0 = c0<<1 | bit
	}
	v = byte(c0)
	m.last[lane] = v
	m.prev = v
	return v
}

// diffLimit bounds the counts of adaptPacked.
const diffLimit = 15

// adaptRate[n] is 65536/(n+1.5).
var adaptRate = func() (t [diffLimit + 1]int32) {
	for n := range t {
		t[n] = int32(65536 * 2 / (2*n + 3))
	}
	return t
}()

// adaptPacked updates an entry that holds a 12-bit probability in its top
// bits and how often it was updated (up to 15) in its low 4 bits: the
// probability moves by 1/(n+1.5) of its error, so that a context seen only
// a few times learns quickly.
func adaptPacked(e *uint16, bit uint32) {
	p, n := int32(*e>>4), *e&15
	target := int32(0)
	if bit != 0 {
		target = 4095
	}
	p += int32((int64(target-p) * int64(adaptRate[n])) >> 16)
	p = min(max(p, 1), 4095)
	if n < 15 {
		n++
	}
	*e = uint16(p)<<4 | n
}

// Change-flag model sizes.
const (
	flagBits   = 13
	flagTables = 5
	flagInputs = 1 + flagTables + 1 // order 0, the tables, a bias
	flagSets   = 4 * 2 * 4
)

// flagModel predicts, in coding 2, whether each byte of a copy differs
// from its predicted byte. Its contexts: the lane and the last 8 flags;
// the lane, the predicted byte and the last 2 flags; the predicted byte
// and the one before it; the flags of the same lane in the 4 words before
// and the last flag, with the lane; the lane and the number of unchanged
// bytes since the last change (up to 255); the predicted byte and the
// three before it, with the lane.
type flagModel struct {
	t0   [4 << 8]uint16
	t    [flagTables][1 << flagBits]uint16
	w    [flagSets][flagInputs]int32
	hist uint32 // one bit per byte of copies, the latest in bit 0
	pred uint32 // the previous predicted bytes, the latest in the low byte
	run  uint32 // unchanged bytes since the last change, up to 255

	idx [flagTables + 1]uint32
	st  [flagInputs]int32
}

func newFlagModel() *flagModel {
	m := &flagModel{}
	fillHalf(m.t0[:])
	for i := range m.t {
		fillHalf(m.t[i][:])
	}
	for i := range m.w {
		for j := range m.w[i] {
			m.w[i][j] = 1 << 14
		}
	}
	return m
}

func flagHash(k uint32) uint32 { return k * 0x9e3779b1 >> (32 - flagBits) }

// code codes (with e) or decodes (with d) the flag of one byte of a copy:
// 1 if the result byte differs from the predicted byte pred.
func (m *flagModel) code(e *rangeEncoder, d *rangeDecoder, bit uint32, lane int, pred byte) uint32 {
	l, h := uint32(lane), m.hist
	m.idx[0] = l<<8 | h&0xff
	m.idx[1] = flagHash(1<<24 | l<<16 | uint32(pred)<<8 | h&3)
	m.idx[2] = flagHash(2<<24 | (m.pred&0xff)<<8 | uint32(pred))
	m.idx[3] = flagHash(3<<24 | l<<8 | (h>>3&1)<<4 | (h>>7&1)<<3 | (h>>11&1)<<2 | (h>>15&1)<<1 | h&1)
	m.idx[4] = flagHash(4<<24 | l<<8 | m.run)
	m.idx[5] = flagHash((m.pred&0xffffff)<<8|uint32(pred)) ^ l
	m.st[0] = int32(stretchTab[m.t0[m.idx[0]]>>4])
	for j := range flagTables {
		m.st[j+1] = int32(stretchTab[m.t[j][m.idx[j+1]]>>4])
	}
	m.st[flagInputs-1] = 256
	w := &m.w[lane*8+int(h&1)*4+int(min(m.run, 3))]
	var dot int64
	for j := range flagInputs {
		dot += int64(m.st[j]) * int64(w[j])
	}
	pr := squash(int32(dot >> 16))
	if e != nil {
		e.bitP(clampP(pr), bit)
	} else {
		bit = d.bitP(clampP(pr))
	}
	err := (int32(bit<<12) - pr) * 10
	for j := range flagInputs {
		w[j] += (m.st[j]*err + 0x8000) >> 16
	}
	adaptPacked(&m.t0[m.idx[0]], bit)
	for j := range flagTables {
		adaptPacked(&m.t[j][m.idx[j+1]], bit)
	}
	m.hist = h<<1 | bit
	m.pred = m.pred<<8 | uint32(pred)
	if bit != 0 {
		m.run = 0
	} else if m.run < 255 {
		m.run++
	}
	return bit
}

// halves is a table of probabilities ½ to initialize models from.
var halves = func() (t [1 << litBits]uint16) {
	for i := range t {
		t[i] = 1 << 15
	}
	return t
}()

// fillHalf sets every probability of t to ½.
func fillHalf(t []uint16) {
	for len(t) > 0 {
		t = t[copy(t, halves[:]):]
	}
}
