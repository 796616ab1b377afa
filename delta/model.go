package delta

// model holds every adaptive probability of the version 1 body coding; the
// encoder and the decoder keep identical copies and update them identically.
//
// A record is: seek (signed move of the base position), copy length, the
// copy's differences, insert length, the inserted bytes. Differences
// (result byte minus base byte, mod 256) are mostly zero; they are coded as
// the length of each run of zeros (a gap) followed by one non-zero value.
// Contexts use the position's lane (offset mod 4: firmware words are
// aligned) because a shifted address changes the same bytes of each word.
type model struct {
	seekNonZero prob
	seekNeg     prob
	seekLen     intModel
	copyLen     intModel
	insertLen   intModel
	gap         [4 * 3]intModel // lane × (region start, after an isolated change, after a run)
	same        [4 * 3]prob     // value equals the lane's previous value
	value       [4][256]prob    // value per lane, as an 8-bit tree
	last        [4]byte         // previous value per lane
	literal     [16][256]prob   // inserted byte by the high nibble of the byte before
	literal1    [256][256]prob  // and by the whole byte before
	prev        byte            // last result byte (inserted or copied)
}

func (m *model) init() {
	*m = model{seekNonZero: probInit, seekNeg: probInit}
	for _, im := range []*intModel{&m.seekLen, &m.copyLen, &m.insertLen} {
		im.init()
	}
	for i := range m.gap {
		m.gap[i].init()
	}
	initProbs(m.same[:])
	for i := range m.value {
		initProbs(m.value[i][:])
	}
	for i := range m.literal {
		initProbs(m.literal[i][:])
	}
	for i := range m.literal1 {
		initProbs(m.literal1[i][:])
	}
}

// Gap states.
const (
	gapStart    = 0
	gapIsolated = 1
	gapRun      = 2
)

// record is one control record, in the result's order.
type record struct {
	seek   int64 // added to the base position before copying
	copy   int64 // bytes copied from the base, each plus a difference
	insert int64 // bytes taken from the patch
}

// encoder codes records for a base and a target held in memory.
type encoder struct {
	rc      *rangeEncoder
	m       model
	base    []byte
	target  []byte
	bp, tp  int64 // positions in base and target
	changed int64
}

func newEncoder(base, target []byte) *encoder {
	e := &encoder{rc: newRangeEncoder(), base: base, target: target}
	e.m.init()
	return e
}

func (e *encoder) record(r record) {
	m, rc := &e.m, e.rc
	if r.seek == 0 {
		rc.bit(&m.seekNonZero, 0)
	} else {
		rc.bit(&m.seekNonZero, 1)
		s := r.seek
		if s < 0 {
			rc.bit(&m.seekNeg, 1)
			s = -s
		} else {
			rc.bit(&m.seekNeg, 0)
		}
		m.seekLen.encode(rc, uint64(s))
	}
	e.bp += r.seek

	m.copyLen.encode(rc, uint64(r.copy))
	base, target := e.base[e.bp:e.bp+r.copy], e.target[e.tp:e.tp+r.copy]
	state := gapStart
	for i := 0; i < len(target); {
		j := i
		for j < len(target) && target[j] == base[j] {
			j++
		}
		lane := int(e.tp+int64(i)) & 3
		m.gap[lane*3+state].encode(rc, uint64(j-i))
		if j == len(target) {
			break
		}
		if j == i {
			state = gapRun
		} else {
			state = gapIsolated
		}
		lane = int(e.tp+int64(j)) & 3
		v := target[j] - base[j]
		e.changed++
		if v == m.last[lane] {
			rc.bit(&m.same[lane*3+state], 0)
		} else {
			rc.bit(&m.same[lane*3+state], 1)
			rc.tree(m.value[lane][:], 8, uint32(v))
			m.last[lane] = v
		}
		i = j + 1
	}
	if r.copy > 0 {
		m.prev = target[len(target)-1]
	}
	e.bp += r.copy
	e.tp += r.copy

	m.insertLen.encode(rc, uint64(r.insert))
	for _, c := range e.target[e.tp : e.tp+r.insert] {
		rc.tree2(m.literal[m.prev>>4][:], m.literal1[m.prev][:], 8, uint32(c))
		m.prev = c
	}
	e.tp += r.insert
}
