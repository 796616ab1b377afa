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
	lit1        *v1Literals     // coding 1's literal model (coding 2 has litModel)
	prev        byte            // last result byte (inserted or copied)
	mapCount    intModel        // version 2: address map entries
	mapGap      intModel        // distance between entries' base offsets
	mapSign     prob            // sign of the change of delta
	mapDelta    intModel        // magnitude of the change of delta
}

// v1Literals is coding 1's literal model.
type v1Literals struct {
	literal  [16][256]prob  // inserted byte by the high nibble of the byte before
	literal1 [256][256]prob // and by the whole byte before
}

// init resets the model; coding 1 also has its literal tables.
func (m *model) init(c Coding) {
	*m = model{seekNonZero: probInit, seekNeg: probInit}
	if c == CodingRange {
		m.lit1 = &v1Literals{}
		for i := range m.lit1.literal {
			initProbs(m.lit1.literal[i][:])
		}
		for i := range m.lit1.literal1 {
			initProbs(m.lit1.literal1[i][:])
		}
	}
	m.mapSign = probInit
	for _, im := range []*intModel{&m.seekLen, &m.copyLen, &m.insertLen, &m.mapCount, &m.mapGap, &m.mapDelta} {
		im.init()
	}
	for i := range m.gap {
		m.gap[i].init()
	}
	initProbs(m.same[:])
	for i := range m.value {
		initProbs(m.value[i][:])
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
	pred    *predictor // version 2: predicts copies from the base
	lit     *litModel  // coding 2: literals by context mixing
	diff    *diffModel // coding 2: differences by context mixing
	flags   *flagModel // coding 2: which bytes of a copy changed
}

func newEncoder(base, target []byte, c Coding) *encoder {
	e := &encoder{rc: newRangeEncoder(), base: base, target: target}
	e.m.init(c)
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
	if e.pred != nil {
		base = e.predict(r.copy)
	}
	if e.flags != nil {
		e.copyFlags(base, target)
		i := len(target)
		if r.copy > 0 {
			m.prev = target[i-1]
		}
		e.bp += r.copy
		e.tp += r.copy
		m.insertLen.encode(rc, uint64(r.insert))
		e.literals(r.insert)
		return
	}
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
	if e.lit != nil {
		e.literals(r.insert)
		return
	}
	for _, c := range e.target[e.tp : e.tp+r.insert] {
		rc.tree2(m.lit1.literal[m.prev>>4][:], m.lit1.literal1[m.prev][:], 8, uint32(c))
		m.prev = c
	}
	e.tp += r.insert
}

// copyFlags codes a copy in coding 2: for each byte a flag "changed", and
// for a changed byte its difference from the predicted byte.
func (e *encoder) copyFlags(base, target []byte) {
	state := gapIsolated
	for j := range target {
		pos := e.tp + int64(j)
		lane := int(pos & 3)
		if target[j] == base[j] {
			e.flags.code(e.rc, nil, 0, lane, base[j])
			state = gapIsolated
			continue
		}
		e.flags.code(e.rc, nil, 1, lane, base[j])
		var before byte
		if pos > 0 {
			before = e.target[pos-1]
		}
		e.diff.code(e.rc, nil, target[j]-base[j], int(pos&7), base[j], before, state)
		e.changed++
		state = gapRun
	}
}

// literals codes n inserted bytes with coding 2's literal model.
func (e *encoder) literals(n int64) {
	{
		var h uint32
		for _, c := range e.target[max(e.tp-4, 0):e.tp] {
			h = h<<8 | uint32(c)
		}
		e.lit.hist = h
		for i, c := range e.target[e.tp : e.tp+n] {
			e.lit.encode(e.rc, c, int(e.tp+int64(i))&3)
		}
		e.tp += n
	}
}

// predict returns the predicted bytes of a copy of n bytes at the current
// positions.
func (e *encoder) predict(n int64) []byte {
	out := make([]byte, 0, n)
	e.pred.begin(e.bp, e.tp, n)
	for {
		b, err := e.pred.next()
		if err != nil {
			panic(err) // the base is in memory: it cannot fail
		}
		if len(b) == 0 {
			return out
		}
		out = append(out, b...)
	}
}

// writeMap codes the address map.
func (e *encoder) writeMap(am addrMap) {
	m, rc := &e.m, e.rc
	m.mapCount.encode(rc, uint64(len(am.start)))
	var prevStart uint32
	var prevDelta int32
	for k := range am.start {
		m.mapGap.encode(rc, uint64(am.start[k]-prevStart))
		d := int64(am.dlt[k]) - int64(prevDelta)
		if d < 0 {
			rc.bit(&m.mapSign, 1)
			d = -d
		} else {
			rc.bit(&m.mapSign, 0)
		}
		m.mapDelta.encode(rc, uint64(d))
		prevStart, prevDelta = am.start[k], am.dlt[k]
	}
}
