package delta

import "encoding/binary"

// normalize returns a copy of img in which the offset fields of the
// references a transform predicts are zeroed (the opcode bits stay), so
// that code whose calls changed only because code moved matches its old
// self byte for byte. Create matches the normalized images (the records
// are positions, valid for the real ones too) and codes the real bytes
// against the predictions; normalization need not be exact, it only guides
// matching.
func normalize(img []byte, t Transform) []byte {
	b := make([]byte, len(img))
	copy(b, img)
	n := len(b)
	le32 := func(i int) uint32 { return binary.LittleEndian.Uint32(b[i:]) }
	put := func(i int, v uint32) { binary.LittleEndian.PutUint32(b[i:], v) }
	switch t {
	case TransformThumb2:
		for i := 0; i+4 <= n; i += 2 {
			hw1, hw2 := binary.LittleEndian.Uint16(b[i:]), binary.LittleEndian.Uint16(b[i+2:])
			switch {
			case hw1&0xf800 == 0xf000 && hw2&0x9000 == 0x9000:
				binary.LittleEndian.PutUint16(b[i:], hw1&0xf800)
				binary.LittleEndian.PutUint16(b[i+2:], hw2&0xd000)
				i += 2
			case hw1&0xf800 == 0xf000 && hw2&0xd000 == 0x8000:
				binary.LittleEndian.PutUint16(b[i:], hw1&0xfbc0)
				binary.LittleEndian.PutUint16(b[i+2:], hw2&0xd000)
				i += 2
			case hw1>>11 >= 0x1d:
				i += 2
			case hw1&0xf000 == 0xd000 && hw1&0x0e00 != 0x0e00:
				binary.LittleEndian.PutUint16(b[i:], hw1&0xff00)
			case hw1&0xf800 == 0xe000:
				binary.LittleEndian.PutUint16(b[i:], hw1&0xf800)
			}
		}
	case TransformARM:
		for i := 0; i+4 <= n; i += 4 {
			if w := le32(i); w&0x0e000000 == 0x0a000000 && w>>28 != 0xf {
				put(i, w&0xff000000)
			}
		}
	case TransformAArch64:
		for i := 0; i+4 <= n; i += 4 {
			w := le32(i)
			switch {
			case w&0x7c000000 == 0x14000000:
				put(i, w&0xfc000000)
			case w&0xff000010 == 0x54000000, w&0x7e000000 == 0x34000000:
				put(i, w&^(0x7ffff<<5))
			case w&0x7e000000 == 0x36000000:
				put(i, w&^(0x3fff<<5))
			case w&0x9f000000 == 0x90000000:
				put(i, w&0x9f00001f)
				if i+8 <= n {
					if w2 := le32(i + 4); w2>>5&31 == w&31 && (w2&0xffc00000 == 0x91000000 || w2&0x3b000000 == 0x39000000) {
						put(i+4, w2&^(0xfff<<10))
						i += 4
					}
				}
			}
		}
	case TransformRV32, TransformRV64:
		for i := 0; i+4 <= n; i += 2 {
			w := le32(i)
			if w&3 != 3 {
				continue
			}
			switch w & 0x7f {
			case 0x6f:
				put(i, w&0xfff)
			case 0x63:
				put(i, w&0x01fff07f)
			case 0x17:
				put(i, w&0xfff)
				if i+8 <= n {
					if w2 := le32(i + 4); w2>>15&31 == w>>7&31 && (w2&0x7f == 0x67 || w2&0x7f == 0x13 || w2&0x7f == 0x03) {
						put(i+4, w2&0xfffff)
						i += 4
					}
				}
			}
			i += 2
		}
	case TransformX86_64:
		for i := 0; i+5 <= n; i++ {
			at, end := 0, 0
			switch {
			case b[i] == 0xe8 || b[i] == 0xe9:
				at, end = 1, 5
			case b[i] == 0x0f && b[i+1]&0xf0 == 0x80 && i+6 <= n:
				at, end = 2, 6
			case (b[i] == 0x48 || b[i] == 0x4c) && b[i+2]&0xc7 == 0x05 && ripOp[b[i+1]] && i+7 <= n:
				at, end = 3, 7
			default:
				continue
			}
			t := int64(i+end) + int64(int32(le32(i+at)))
			if t < 0 || t >= 2*int64(n) {
				continue
			}
			put(i+at, 0)
			i += end - 1
		}
	}
	return b
}
