package delta

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"slices"
)

// Detection is what DetectTransform found in a base image.
type Detection struct {
	Transform Transform
	ImageBase uint64 // load address of the image's first byte (a guess for a raw image)
	Reason    string // how it was picked, for people
}

// DetectTransform picks the transform for an image: from the ELF header's
// machine when the image is an ELF file, otherwise from instruction
// statistics of the raw bytes (which instruction set's calls land inside
// the image most often). It also guesses the image's load address.
func DetectTransform(img []byte) Detection {
	if d, ok := detectELF(img); ok {
		return d
	}
	type cand struct {
		t    Transform
		hits int
	}
	cands := []cand{
		{TransformThumb2, callsThumb2(img)},
		{TransformARM, callsARM(img)},
		{TransformAArch64, callsAArch64(img)},
		{TransformRV32, callsRISCV(img)},
		{TransformX86_64, callsX86(img)},
	}
	slices.SortStableFunc(cands, func(a, b cand) int { return b.hits - a.hits })
	best := cands[0]
	// Random bytes give a few in-image calls by chance: ask for a clear
	// lead and at least one call per 4 KiB.
	if best.hits < 8 || best.hits < len(img)/4096 || best.hits < 2*cands[1].hits {
		return Detection{TransformNone, 0, fmt.Sprintf("no instruction set stands out (%s: %d calls into the image, %s: %d)",
			best.t, best.hits, cands[1].t, cands[1].hits)}
	}
	d := Detection{Transform: best.t}
	d.ImageBase = guessBase(img, best.t)
	d.Reason = fmt.Sprintf("instruction statistics: %d %s calls into the image (next: %s, %d)", best.hits, best.t, cands[1].t, cands[1].hits)
	return d
}

func detectELF(img []byte) (Detection, bool) {
	if !bytes.HasPrefix(img, []byte(elf.ELFMAG)) {
		return Detection{}, false
	}
	f, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		return Detection{}, false
	}
	d := Detection{}
	switch f.Machine {
	case elf.EM_ARM:
		d.Transform = TransformARM
		if f.Entry&1 != 0 || callsThumb2(img) > callsARM(img) {
			d.Transform = TransformThumb2
		}
	case elf.EM_AARCH64:
		d.Transform = TransformAArch64
	case elf.EM_RISCV:
		d.Transform = TransformRV64
		if f.Class == elf.ELFCLASS32 {
			d.Transform = TransformRV32
		}
	case elf.EM_X86_64:
		d.Transform = TransformX86_64
	default:
		return Detection{TransformNone, 0, fmt.Sprintf("ELF machine %s has no transform", f.Machine)}, true
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 {
			d.ImageBase = p.Vaddr - p.Off
			break
		}
	}
	d.Reason = fmt.Sprintf("ELF machine %s", f.Machine)
	return d, true
}

func callsThumb2(b []byte) (n int) {
	for i := 0; i+4 <= len(b); i += 2 {
		hw1, hw2 := uint32(binary.LittleEndian.Uint16(b[i:])), uint32(binary.LittleEndian.Uint16(b[i+2:]))
		if hw1&0xf800 == 0xf000 && hw2&0xd000 == 0xd000 {
			s := hw1 >> 10 & 1
			i1, i2 := ^(hw2>>13&1^s)&1, ^(hw2>>11&1^s)&1
			t := int64(i) + 4 + sext(s<<24|i1<<23|i2<<22|(hw1&0x3ff)<<12|(hw2&0x7ff)<<1, 25)
			if t >= 0 && t < int64(len(b)) && t != int64(i)+4 {
				n++
			}
			i += 2
		}
	}
	return n
}

// callsARM counts A32 BL instructions into the image, if the image looks
// like A32 at all: most A32 instructions carry the condition "always"
// (0xe in the top nibble), and without that the 0xeb top byte of BL is as
// likely an AArch64 SUBS.
func callsARM(b []byte) (n int) {
	always := 0
	for i := 0; i+4 <= len(b); i += 4 {
		if b[i+3]>>4 == 0xe {
			always++
		}
	}
	if always < len(b)/4*3/10 {
		return 0
	}
	for i := 0; i+4 <= len(b); i += 4 {
		w := binary.LittleEndian.Uint32(b[i:])
		if w&0xff000000 == 0xeb000000 {
			t := int64(i) + 8 + sext(w&0xffffff, 24)<<2
			if t >= 0 && t < int64(len(b)) && t != int64(i)+4 {
				n++
			}
		}
	}
	return n
}

func callsAArch64(b []byte) (n int) {
	for i := 0; i+4 <= len(b); i += 4 {
		w := binary.LittleEndian.Uint32(b[i:])
		if w&0xfc000000 == 0x94000000 {
			t := int64(i) + sext(w&0x3ffffff, 26)<<2
			if t >= 0 && t < int64(len(b)) && t != int64(i)+4 && t != int64(i) {
				n++
			}
		}
	}
	return n
}

func callsRISCV(b []byte) (n int) {
	for i := 0; i+4 <= len(b); i += 2 {
		w := binary.LittleEndian.Uint32(b[i:])
		if w&3 != 3 {
			continue
		}
		if w&0xfff == 0x0ef { // JAL ra
			t := int64(i) + sext(w>>31<<20|w>>12&0xff<<12|w>>20&1<<11|w>>21&0x3ff<<1, 21)
			if t >= 0 && t < int64(len(b)) && t != int64(i)+4 && t != int64(i) {
				n++
			}
		}
		i += 2
	}
	return n
}

func callsX86(b []byte) (n int) {
	for i := 0; i+5 <= len(b); i++ {
		if b[i] == 0xe8 {
			d := int64(int32(binary.LittleEndian.Uint32(b[i+1:])))
			if t := int64(i) + 5 + d; t >= 0 && t < int64(len(b)) && d != 0 {
				n++
				i += 4
			}
		}
	}
	return n
}

// guessBase guesses a raw image's load address from its pointer words: the
// window of the image's size (in 256-byte steps) that holds the most
// aligned words, the lowest of them rounded down to 256 bytes. Words below
// 4 KiB are not counted (small numbers, not addresses).
func guessBase(img []byte, t Transform) uint64 {
	size := 4
	if t == TransformAArch64 || t == TransformX86_64 || t == TransformRV64 {
		size = 8
	}
	var keys []uint64
	for i := 0; i+size <= len(img); i += size {
		var v uint64
		if size == 4 {
			v = uint64(binary.LittleEndian.Uint32(img[i:]))
		} else {
			v = binary.LittleEndian.Uint64(img[i:])
			if v >= 1<<40 {
				continue
			}
		}
		if v >= 4096 {
			keys = append(keys, v)
		}
	}
	if len(keys) == 0 {
		return 0
	}
	slices.Sort(keys)
	span := uint64(len(img))
	bestN, bestLo := 0, keys[0]
	j := 0
	for i := range keys {
		for keys[j]+span <= keys[i] {
			j++
		}
		if n := i - j + 1; n > bestN {
			bestN, bestLo = n, keys[j]
		}
	}
	return bestLo &^ 0xff
}

// adrpBase picks the low 12 bits of an AArch64 image's load address, which
// ADRP's page arithmetic depends on and a raw image does not tell: the
// value under which the most ADRP instructions of the copies are predicted
// exactly. The high bits stay base's.
func adrpBase(old, next []byte, recs []record, am addrMap, base uint64) uint64 {
	type site struct {
		op, np, target int64 // target: page offset + low 12 bits, less pc's page
		want           uint32
	}
	var sites []site
	var bp, tp int64
	for _, r := range recs {
		bp += r.seek
		for i := (4 - bp&3) & 3; i+8 <= r.copy && len(sites) < 1<<10; i += 4 {
			ins := binary.LittleEndian.Uint32(old[bp+i:])
			if ins&0x9f000000 != 0x90000000 {
				continue
			}
			rd := ins & 31
			for j := i + 4; j+4 <= r.copy && j <= i+predLook-4; j += 4 {
				ins2 := binary.LittleEndian.Uint32(old[bp+j:])
				if ins2>>5&31 != rd {
					continue
				}
				if ins2&0xffc00000 == 0x91000000 {
					sites = append(sites, site{bp + i, tp + i, sext(ins>>5&0x7ffff<<2|ins>>29&3, 21)<<12 + int64(ins2>>10&0xfff),
						binary.LittleEndian.Uint32(next[tp+i:])})
				}
				break
			}
		}
		bp += r.copy
		tp += r.copy + r.insert
	}
	bestL, bestN := base&0xfff, -1
	for l := int64(0); l < 4096; l += 4 {
		n := 0
		for _, s := range sites {
			pc := l + s.op
			t := pc&^0xfff + s.target - l
			if t < 0 || t >= int64(len(old)) {
				continue
			}
			nt := t + am.delta(t) + l
			d := (nt&^0xfff - (l+s.np)&^0xfff) >> 12
			ins := s.want&0x9f00001f | uint32(d&3)<<29 | uint32(d>>2&0x7ffff)<<5
			if ins == s.want {
				n++
			}
		}
		if n > bestN {
			bestL, bestN = uint64(l), n
		}
	}
	return base&^0xfff | bestL
}

// pointerBase picks the load address under which the most pointer words
// of the copies are predicted exactly, less those a wrong prediction would
// spoil; ok is false when no address does more good than harm. Candidates
// are the guess and addresses 256 bytes apart below the lowest changed word
// of the densest window of changed words.
func pointerBase(old, next []byte, recs []record, am addrMap, t Transform, guess uint64) (uint64, bool) {
	size := 4
	if t == TransformAArch64 || t == TransformX86_64 || t == TransformRV64 {
		size = 8
	}
	word := func(b []byte) uint64 {
		if size == 4 {
			return uint64(binary.LittleEndian.Uint32(b))
		}
		return binary.LittleEndian.Uint64(b)
	}
	type site struct{ o, n uint64 }
	var sites []site
	var changed []uint64
	var bp, tp int64
	for _, r := range recs {
		bp += r.seek
		s := int64(size)
		for i := (s - bp%s) % s; i+s <= r.copy; i += s {
			o, n := word(old[bp+i:]), word(next[tp+i:])
			if o < 4096 || o >= 1<<40 {
				continue
			}
			sites = append(sites, site{o, n})
			if o != n {
				changed = append(changed, o)
			}
		}
		bp += r.copy
		tp += r.copy + r.insert
	}
	if len(changed) == 0 {
		return guess, false
	}
	cands := []uint64{guess}
	slices.Sort(changed)
	span := uint64(len(old))
	step := max(uint64(256), span/128&^0xff)
	// The densest windows of changed words (instructions that change
	// cluster too, so take the best few), and addresses below each.
	for range 4 {
		if len(changed) == 0 {
			break
		}
		bestN, lo, hi, j := 0, 0, 0, 0
		for i := range changed {
			for changed[j]+span <= changed[i] {
				j++
			}
			if n := i - j + 1; n > bestN {
				bestN, lo, hi = n, j, i+1
			}
		}
		low := changed[lo]
		for b := low &^ 0xff; ; b -= step {
			cands = append(cands, b)
			if b < step || low-b >= span {
				break
			}
		}
		changed = append(changed[:lo], changed[hi:]...)
	}
	bestB, bestScore := guess, 0
	for _, b := range cands {
		score := 0
		for _, s := range sites {
			off := int64(s.o - b)
			if s.o < b || off >= int64(len(old)) {
				continue
			}
			p := uint64(off+am.delta(off)) + b
			if size == 4 {
				p &= 0xffffffff
			}
			switch {
			case p == s.n && s.o != s.n:
				score++
			case p != s.n && s.o == s.n:
				score--
			}
		}
		if score > bestScore {
			bestB, bestScore = b, score
		}
	}
	return bestB, bestScore > 0
}
