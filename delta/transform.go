package delta

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// Transform says how a version 2 patch predicts the result's bytes from the
// base's: the instruction set whose references (branches, calls, address
// computations and pointer words) are decoded in the base and re-encoded
// for where their code and their targets sit in the result.
type Transform uint8

// Transforms, by the id the header records.
const (
	TransformNone    Transform = 0 // bytes as they are
	TransformThumb2  Transform = 1 // ARMv7-M/ARMv8-M Thumb-2 (Cortex-M)
	TransformARM     Transform = 2 // A32
	TransformAArch64 Transform = 3 // A64
	TransformRV32    Transform = 4 // RISC-V RV32 (with or without C)
	TransformRV64    Transform = 5 // RISC-V RV64
	TransformX86_64  Transform = 6 // x86-64
	transformCount             = 7
)

var transformNames = [transformCount]string{"none", "thumb2", "arm", "aarch64", "rv32", "rv64", "x86-64"}

func (t Transform) known() bool { return t < transformCount }

func (t Transform) String() string {
	if t.known() {
		return transformNames[t]
	}
	return fmt.Sprintf("transform(%d)", uint8(t))
}

// TransformNames lists the names ParseTransform accepts, besides "auto".
func TransformNames() []string { return transformNames[:] }

// ParseTransform returns the transform called name ("thumb2", "arm",
// "aarch64", "rv32", "rv64", "x86-64" or "none"); "auto" returns ok true
// and auto true.
func ParseTransform(name string) (t Transform, auto bool, err error) {
	n := strings.ToLower(name)
	switch n {
	case "auto", "":
		return 0, true, nil
	case "x86_64", "amd64", "x64":
		return TransformX86_64, false, nil
	case "arm64":
		return TransformAArch64, false, nil
	case "thumb", "cortex-m":
		return TransformThumb2, false, nil
	}
	for i, s := range transformNames {
		if s == n {
			return Transform(i), false, nil
		}
	}
	return 0, false, fmt.Errorf("delta: unknown architecture %q: use auto, %s", name, strings.Join(transformNames[:], ", "))
}

// Predictor window: the base is read in chunks of predChunk bytes, and an
// instruction is decoded from at most predLook bytes (AArch64 looks that
// far for the instruction that completes an ADRP).
const (
	predChunk = 16 << 10
	predLook  = 32
)

// predictor turns the base bytes of a copy into the predicted result bytes.
// Encoder and decoder run the same code on the same bytes, so whatever the
// prediction, the residual (result minus prediction) rebuilds the result.
type predictor struct {
	t         Transform
	pointers  bool  // predict absolute pointer words
	relWords  bool  // predict self-relative words
	base      int64 // image load address
	oldSize   int64 // base image size
	amap      addrMap
	src       io.ReaderAt
	old       []byte // base bytes of the window
	pred      []byte // predictions for the window
	cur, tcur int64  // base and result offsets of old[0]
	have      int    // bytes loaded in the window
	done      int    // bytes returned by the last next, dropped on the next call
	scan      int    // next window position to decode
	rem       int64  // copy bytes not loaded yet
}

func newPredictor(h Header, amap addrMap, src io.ReaderAt) *predictor {
	return &predictor{t: h.Transform, pointers: h.TransformFlags&FlagPointers != 0, relWords: h.TransformFlags&FlagRelWords != 0, base: int64(h.ImageBase),
		oldSize: h.BaseSize, amap: amap, src: src,
		old: make([]byte, predChunk+predLook), pred: make([]byte, predChunk+predLook)}
}

// begin starts a copy of n bytes from base offset bp to result offset tp.
func (p *predictor) begin(bp, tp, n int64) {
	p.cur, p.tcur, p.have, p.done, p.scan, p.rem = bp, tp, 0, 0, 0, n
}

// next returns the next predicted bytes of the copy; none when it is done.
// The slice is valid until the next call.
func (p *predictor) next() ([]byte, error) {
	if p.done > 0 {
		copy(p.old, p.old[p.done:p.have])
		copy(p.pred, p.pred[p.done:p.have])
		p.have -= p.done
		p.scan -= p.done
		p.cur += int64(p.done)
		p.tcur += int64(p.done)
		p.done = 0
	}
	if want := min(int64(len(p.old)-p.have), p.rem); want > 0 {
		k, err := p.src.ReadAt(p.old[p.have:p.have+int(want)], p.cur+int64(p.have))
		if int64(k) < want {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("delta: reading the base at %d: %w", p.cur+int64(p.have), err)
		}
		copy(p.pred[p.have:], p.old[p.have:p.have+k])
		p.have += k
		p.rem -= want
	}
	if p.have == 0 {
		return nil, nil
	}
	limit := p.have
	if p.rem > 0 {
		limit = predChunk
	}
	if p.t == TransformNone {
		p.scan = limit
	}
	for p.scan < limit {
		p.scan += p.step(p.scan)
	}
	p.done = p.scan
	return p.pred[:p.scan], nil
}

// mapOff maps a base offset to the result offset the address map gives
// it; ok is false for an offset outside the base, whose reference is then
// left as it is (it is more likely data that looks like an instruction
// than a reference out of the image).
func (p *predictor) mapOff(t int64) (int64, bool) {
	if t < 0 || t >= p.oldSize {
		return t, false
	}
	return t + p.amap.delta(t), true
}

// pointer predicts the n-byte little-endian word at i if it holds an
// address inside the base image.
func (p *predictor) pointer(i, n int) bool {
	if !p.pointers || p.have-i < n {
		return false
	}
	var v uint64
	if n == 4 {
		v = uint64(binary.LittleEndian.Uint32(p.old[i:]))
	} else {
		v = binary.LittleEndian.Uint64(p.old[i:])
	}
	off := int64(v) - p.base
	if v >= 1<<62 || off < 0 || off >= p.oldSize {
		return false
	}
	no, _ := p.mapOff(off)
	nv := uint64(no + p.base)
	if n == 4 {
		binary.LittleEndian.PutUint32(p.pred[i:], uint32(nv))
	} else {
		binary.LittleEndian.PutUint64(p.pred[i:], nv)
	}
	return true
}

// relWord predicts the word at i, a multiple of 4, if it holds an offset
// from itself back into the image of at least 256 bytes: a signed 32-bit
// word with its top bit set, or a prel31 one (top bit clear, bit 30 its
// sign).
func (p *predictor) relWord(i int, op, np int64) bool {
	if !p.relWords || p.have-i < 4 {
		return false
	}
	w := binary.LittleEndian.Uint32(p.old[i:])
	v := int64(int32(w))
	if w>>31 == 0 {
		v = sext(w, 31)
	}
	if v > -256 || op+v < 0 {
		return false
	}
	t, _ := p.mapOff(op + v)
	nv := t - np
	switch {
	case w>>31 == 1 && nv < 0 && fits(nv, 32):
		binary.LittleEndian.PutUint32(p.pred[i:], uint32(nv))
	case w>>31 == 0 && nv < 0 && fits(nv, 31):
		binary.LittleEndian.PutUint32(p.pred[i:], uint32(nv)&0x7fffffff)
	}
	return true
}

// step decodes the instruction (or data word) at window position i, writes
// its prediction and returns its length in bytes (at least 1, and never past
// the loaded bytes).
func (p *predictor) step(i int) int {
	avail := p.have - i
	op := p.cur + int64(i)  // base offset
	np := p.tcur + int64(i) // result offset
	switch p.t {
	case TransformThumb2:
		return p.stepThumb2(i, avail, op, np)
	case TransformARM:
		return p.stepARM(i, avail, op, np)
	case TransformAArch64:
		return p.stepAArch64(i, avail, op, np)
	case TransformRV32, TransformRV64:
		return p.stepRISCV(i, avail, op, np)
	case TransformX86_64:
		return p.stepX86(i, avail, op, np)
	}
	return avail
}

func sext(v uint32, bits uint) int64 { return int64(int32(v<<(32-bits)) >> (32 - bits)) }

func fits(v int64, bits uint) bool { return v >= -(1<<(bits-1)) && v < 1<<(bits-1) }

// Thumb-2: BL and B.W (T4) and 32-bit pointer words.
func (p *predictor) stepThumb2(i, avail int, op, np int64) int {
	if op&1 != 0 || avail < 2 {
		return 1
	}
	if op&3 == 0 && (p.pointer(i, 4) || p.relWord(i, op, np)) {
		return 4
	}
	hw1 := uint32(binary.LittleEndian.Uint16(p.old[i:]))
	if hw1>>11 < 0x1d { // a 16-bit instruction
		switch {
		case hw1&0xf000 == 0xd000 && hw1&0x0e00 != 0x0e00: // B<cond> (T1)
			if t, ok := p.mapOff(op + 4 + sext(hw1&0xff<<1, 9)); ok {
				if ni := t - (np + 4); fits(ni, 9) && ni&1 == 0 {
					binary.LittleEndian.PutUint16(p.pred[i:], uint16(hw1&0xff00|uint32(ni>>1)&0xff))
				}
			}
		case hw1&0xf800 == 0xe000: // B (T2)
			if t, ok := p.mapOff(op + 4 + sext(hw1&0x7ff<<1, 12)); ok {
				if ni := t - (np + 4); fits(ni, 12) && ni&1 == 0 {
					binary.LittleEndian.PutUint16(p.pred[i:], uint16(hw1&0xf800|uint32(ni>>1)&0x7ff))
				}
			}
		}
		return 2
	}
	if avail < 4 {
		return avail
	}
	hw2 := uint32(binary.LittleEndian.Uint16(p.old[i+2:]))
	if hw1&0xf800 == 0xf000 && hw2&0x9000 == 0x9000 {
		s := hw1 >> 10 & 1
		j1, j2 := hw2>>13&1, hw2>>11&1
		i1, i2 := ^(j1^s)&1, ^(j2^s)&1
		imm := sext(s<<24|i1<<23|i2<<22|(hw1&0x3ff)<<12|(hw2&0x7ff)<<1, 25)
		t, ok := p.mapOff(op + 4 + imm)
		ni := t - (np + 4)
		if ok && fits(ni, 25) && ni&1 == 0 {
			u := uint32(ni)
			s = u >> 24 & 1
			j1, j2 = ^(u>>23&1^s)&1, ^(u>>22&1^s)&1
			hw1 = hw1&0xf800 | s<<10 | u>>12&0x3ff
			hw2 = hw2&0xd000 | j1<<13 | j2<<11 | u>>1&0x7ff
			binary.LittleEndian.PutUint16(p.pred[i:], uint16(hw1))
			binary.LittleEndian.PutUint16(p.pred[i+2:], uint16(hw2))
		}
	} else if hw1&0xf800 == 0xf000 && hw2&0xd000 == 0x8000 && hw1&0x0380 != 0x0380 { // B<cond>.W (T3)
		s := hw1 >> 10 & 1
		imm := sext(s<<20|(hw2>>11&1)<<19|(hw2>>13&1)<<18|(hw1&0x3f)<<12|(hw2&0x7ff)<<1, 21)
		t, ok := p.mapOff(op + 4 + imm)
		ni := t - (np + 4)
		if ok && fits(ni, 21) && ni&1 == 0 {
			u := uint32(ni)
			hw1 = hw1&0xfbc0 | u>>20&1<<10 | u>>12&0x3f
			hw2 = hw2&0xd000 | u>>18&1<<13 | u>>19&1<<11 | u>>1&0x7ff
			binary.LittleEndian.PutUint16(p.pred[i:], uint16(hw1))
			binary.LittleEndian.PutUint16(p.pred[i+2:], uint16(hw2))
		}
	}
	return 4
}

// A32: B and BL (any condition) and 32-bit pointer words.
func (p *predictor) stepARM(i, avail int, op, np int64) int {
	if op&3 != 0 || avail < 4 {
		return 1
	}
	if p.pointer(i, 4) || p.relWord(i, op, np) {
		return 4
	}
	ins := binary.LittleEndian.Uint32(p.old[i:])
	if ins&0x0e000000 == 0x0a000000 && ins>>28 != 0xf {
		t, ok := p.mapOff(op + 8 + sext(ins&0xffffff, 24)<<2)
		ni := t - (np + 8)
		if ok && ni&3 == 0 && fits(ni>>2, 24) {
			binary.LittleEndian.PutUint32(p.pred[i:], ins&0xff000000|uint32(ni>>2)&0xffffff)
		}
	}
	return 4
}

// AArch64: B and BL, ADRP with the ADD or load/store that completes its
// address, and 64-bit pointer words.
func (p *predictor) stepAArch64(i, avail int, op, np int64) int {
	if op&3 != 0 || avail < 4 {
		return 1
	}
	if op&7 == 0 && p.pointer(i, 8) {
		return 8
	}
	if p.relWord(i, op, np) {
		return 4
	}
	ins := binary.LittleEndian.Uint32(p.old[i:])
	switch {
	case ins&0x7c000000 == 0x14000000: // B, BL
		t, ok := p.mapOff(op + sext(ins&0x3ffffff, 26)<<2)
		ni := t - np
		if ok && ni&3 == 0 && fits(ni>>2, 26) {
			binary.LittleEndian.PutUint32(p.pred[i:], ins&0xfc000000|uint32(ni>>2)&0x3ffffff)
		}
	case ins&0xff000010 == 0x54000000, ins&0x7e000000 == 0x34000000: // B.cond, CBZ, CBNZ
		t, ok := p.mapOff(op + sext(ins>>5&0x7ffff, 19)<<2)
		ni := t - np
		if ok && ni&3 == 0 && fits(ni>>2, 19) {
			binary.LittleEndian.PutUint32(p.pred[i:], ins&^(0x7ffff<<5)|uint32(ni>>2)&0x7ffff<<5)
		}
	case ins&0x7e000000 == 0x36000000: // TBZ, TBNZ
		t, ok := p.mapOff(op + sext(ins>>5&0x3fff, 14)<<2)
		ni := t - np
		if ok && ni&3 == 0 && fits(ni>>2, 14) {
			binary.LittleEndian.PutUint32(p.pred[i:], ins&^(0x3fff<<5)|uint32(ni>>2)&0x3fff<<5)
		}
	case ins&0x9f000000 == 0x90000000: // ADRP
		rd := ins & 31
		pc := p.base + op
		page := pc&^0xfff + sext(ins>>5&0x7ffff<<2|ins>>29&3, 21)<<12
		for j := i + 4; j+4 <= p.have && j <= i+predLook-4; j += 4 {
			ins2 := binary.LittleEndian.Uint32(p.old[j:])
			if ins2>>5&31 != rd {
				continue
			}
			var scale uint32
			switch {
			case ins2&0xffc00000 == 0x91000000: // ADD Xd, Xn, #imm12
			case ins2&0x3f000000 == 0x39000000: // LDR/STR (unsigned offset)
				scale = ins2 >> 30
			case ins2&0x3f000000 == 0x3d000000: // SIMD&FP LDR/STR (unsigned offset)
				scale = ins2>>30 | ins2>>21&4
				if scale > 4 {
					return 4
				}
			default:
				return 4
			}
			target := page + int64(ins2>>10&0xfff)<<scale
			nt, _ := p.mapOff(target - p.base) // outside: the same address
			nt += p.base
			npage := nt &^ 0xfff
			d := (npage - (p.base+np)&^0xfff) >> 12
			lo := nt & 0xfff
			if !fits(d, 21) || lo&(1<<scale-1) != 0 {
				return 4
			}
			binary.LittleEndian.PutUint32(p.pred[i:], ins&0x9f00001f|uint32(d&3)<<29|uint32(d>>2&0x7ffff)<<5)
			binary.LittleEndian.PutUint32(p.pred[j:], ins2&^(0xfff<<10)|uint32(lo>>scale)<<10)
			return 4
		}
	}
	return 4
}

// RISC-V: JAL, AUIPC with the JALR, ADDI, load or store that completes its
// address, LUI with its ADDI (absolute addresses, with pointers on) and
// 32-bit pointer words (RV32) or 64-bit ones (RV64).
func (p *predictor) stepRISCV(i, avail int, op, np int64) int {
	if op&1 != 0 || avail < 2 {
		return 1
	}
	if op&3 == 0 && p.relWord(i, op, np) {
		return 4
	}
	if binary.LittleEndian.Uint16(p.old[i:])&3 != 3 { // compressed
		if p.t == TransformRV32 && op&3 == 0 && p.pointer(i, 4) {
			return 4
		}
		if p.t == TransformRV64 && op&7 == 0 && p.pointer(i, 8) {
			return 8
		}
		return 2
	}
	if avail < 4 {
		return avail
	}
	ins := binary.LittleEndian.Uint32(p.old[i:])
	rd := ins >> 7 & 31
	switch ins & 0x7f {
	case 0x6f: // JAL
		imm := sext(ins>>31<<20|ins>>12&0xff<<12|ins>>20&1<<11|ins>>21&0x3ff<<1, 21)
		t, ok := p.mapOff(op + imm)
		ni := t - np
		if ok && fits(ni, 21) && ni&1 == 0 {
			u := uint32(ni)
			binary.LittleEndian.PutUint32(p.pred[i:], ins&0xfff|u>>20&1<<31|u>>1&0x3ff<<21|u>>11&1<<20|u>>12&0xff<<12)
		}
		return 4
	case 0x63: // BEQ, BNE, BLT, BGE, BLTU, BGEU
		imm := sext(ins>>31<<12|ins>>7&1<<11|ins>>25&0x3f<<5|ins>>8&0xf<<1, 13)
		t, ok := p.mapOff(op + imm)
		ni := t - np
		if ok && fits(ni, 13) && ni&1 == 0 {
			u := uint32(ni)
			binary.LittleEndian.PutUint32(p.pred[i:], ins&0x01fff07f|u>>12&1<<31|u>>5&0x3f<<25|u>>1&0xf<<8|u>>11&1<<7)
		}
		return 4
	case 0x17, 0x37: // AUIPC, LUI
		if avail < 8 {
			return 4
		}
		ins2 := binary.LittleEndian.Uint32(p.old[i+4:])
		if ins2>>15&31 != rd || rd == 0 {
			return 4
		}
		var lo int64
		store := false
		switch {
		case ins2&0x7f == 0x67 && ins2>>12&7 == 0, // JALR
			ins2&0x7f == 0x13 && ins2>>12&7 == 0, // ADDI
			ins2&0x7f == 0x03:                    // loads
			lo = sext(ins2>>20, 12)
		case ins2&0x7f == 0x23: // stores
			lo = sext(ins2>>25<<5|ins2>>7&31, 12)
			store = true
		default:
			return 4
		}
		hi := sext(ins&0xfffff000, 32)
		var nv int64
		if ins&0x7f == 0x17 {
			t, _ := p.mapOff(op + hi + lo) // outside: the same address
			nv = t - np
		} else {
			abs := hi + lo
			if p.t == TransformRV32 {
				abs = int64(uint32(abs))
			}
			off := abs - p.base
			if !p.pointers || off < 0 || off >= p.oldSize {
				return 8
			}
			t, _ := p.mapOff(off)
			nv = t + p.base
			if p.t == TransformRV32 {
				nv = int64(int32(nv))
			}
		}
		nhi := (nv + 0x800) >> 12
		nlo := nv - nhi<<12
		if !fits(nhi, 20) && !(p.t == TransformRV32 && ins&0x7f == 0x37) {
			return 8
		}
		binary.LittleEndian.PutUint32(p.pred[i:], ins&0xfff|uint32(nhi)<<12)
		u := uint32(nlo) & 0xfff
		if store {
			binary.LittleEndian.PutUint32(p.pred[i+4:], ins2&0x01fff07f|u>>5<<25|u&31<<7)
		} else {
			binary.LittleEndian.PutUint32(p.pred[i+4:], ins2&0xfffff|u<<20)
		}
		return 8
	}
	return 4
}

// x86-64: CALL and JMP rel32, Jcc rel32, RIP-relative operands of the
// common MOV/LEA/CMP forms and 64-bit pointer words; a displacement is
// taken for one only if it points inside the base.
func (p *predictor) stepX86(i, avail int, op, np int64) int {
	if op&7 == 0 && p.pointer(i, 8) {
		return 8
	}
	if op&3 == 0 && p.relWord(i, op, np) {
		return 4
	}
	b := p.old[i]
	at, end := 0, 0 // displacement offset and instruction length
	rip := false
	switch {
	case b == 0xe8 || b == 0xe9:
		at, end = 1, 5
	case b == 0x0f && avail >= 2 && p.old[i+1]&0xf0 == 0x80:
		at, end = 2, 6
	case (b == 0x48 || b == 0x4c) && avail >= 3 && p.old[i+2]&0xc7 == 0x05 && ripOp[p.old[i+1]]:
		at, end, rip = 3, 7, true
	case ripOp[b] && avail >= 2 && p.old[i+1]&0xc7 == 0x05:
		at, end, rip = 2, 6, true
	default:
		return 1
	}
	if avail < end {
		return 1
	}
	t := op + int64(end) + int64(int32(binary.LittleEndian.Uint32(p.old[i+at:])))
	// A RIP-relative operand just past the image (.bss) keeps its address;
	// a branch out of the image is more likely data.
	if t < 0 || t >= p.oldSize && !(rip && t < 2*p.oldSize) {
		return 1
	}
	nt, _ := p.mapOff(t)
	nd := nt - (np + int64(end))
	if fits(nd, 32) {
		binary.LittleEndian.PutUint32(p.pred[i+at:], uint32(nd))
	}
	return end
}

// ripOp marks the opcodes whose ModRM byte 0x05 (with the reg bits
// anything) takes a RIP-relative displacement and no immediate.
var ripOp = [256]bool{0x8b: true, 0x89: true, 0x8d: true, 0x3b: true, 0x39: true, 0x03: true, 0x2b: true, 0x63: true,
	0x33: true, 0x85: true, 0x8a: true, 0x88: true, 0x0b: true, 0x23: true}
