package raucb

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A small SquashFS 4.0 reader: enough to read one regular file from the
// root directory of an image (a bundle's manifest.raucm). It reads gzip
// (RAUC's default, mksquashfs's default) and uncompressed blocks; other
// compressors are refused with ErrCompression. Every offset and length read
// from the image is checked against the image before it is used, so that a
// damaged or hostile image gives an error, never a panic or a huge
// allocation.

const (
	squashMagic     = 0x73717368 // "hsqs"
	superblockLen   = 96
	metaMax         = 8192 // uncompressed bytes of a metadata block
	metaUncompBit   = 0x8000
	dataUncompBit   = 1 << 24
	noFragment      = 0xffffffff
	compGzip        = 1
	inodeBasicDir   = 1
	inodeBasicFile  = 2
	inodeExtDir     = 8
	inodeExtFile    = 9
	fragEntryLen    = 16
	fragsPerBlock   = metaMax / fragEntryLen
	maxDirEntries   = 256 // per directory header, as mksquashfs writes them
	maxMetaBlocks   = 4096
	inodeHeaderSize = 16
)

// ErrCompression is returned for a SquashFS compressed with an algorithm this
// reader lacks (xz, lzo, lz4, zstd, lzma).
var ErrCompression = errors.New("raucb: squashfs compression not supported")

var compressors = map[uint16]string{1: "gzip", 2: "lzma", 3: "lzo", 4: "xz", 5: "lz4", 6: "zstd"}

type superblock struct {
	inodes       uint32
	blockSize    uint32
	fragments    uint32
	compression  uint16
	blockLog     uint16
	flags        uint16
	major, minor uint16
	rootInode    uint64
	bytesUsed    uint64
	inodeTable   uint64
	dirTable     uint64
	fragTable    uint64
}

// squashFS is an image in r of size bytes.
type squashFS struct {
	r    io.ReaderAt
	size int64
	sb   superblock
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: squashfs: %s", ErrFormat, fmt.Sprintf(format, args...))
}

func openSquashFS(r io.ReaderAt, size int64) (*squashFS, error) {
	var b [superblockLen]byte
	if size < superblockLen {
		return nil, corrupt("%d bytes, too short for a superblock", size)
	}
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return nil, fmt.Errorf("raucb: reading the squashfs superblock: %w", err)
	}
	le := binary.LittleEndian
	if le.Uint32(b[0:]) != squashMagic {
		return nil, corrupt("no squashfs magic (hsqs) at the start")
	}
	sb := superblock{
		inodes: le.Uint32(b[4:]), blockSize: le.Uint32(b[12:]), fragments: le.Uint32(b[16:]),
		compression: le.Uint16(b[20:]), blockLog: le.Uint16(b[22:]), flags: le.Uint16(b[24:]),
		major: le.Uint16(b[28:]), minor: le.Uint16(b[30:]), rootInode: le.Uint64(b[32:]), bytesUsed: le.Uint64(b[40:]),
		inodeTable: le.Uint64(b[64:]), dirTable: le.Uint64(b[72:]), fragTable: le.Uint64(b[80:]),
	}
	switch {
	case sb.major != 4 || sb.minor != 0:
		return nil, corrupt("version %d.%d, want 4.0", sb.major, sb.minor)
	case sb.blockSize < 4096 || sb.blockSize > 1<<20 || sb.blockSize&(sb.blockSize-1) != 0 || 1<<sb.blockLog != sb.blockSize:
		return nil, corrupt("block size %d (log %d)", sb.blockSize, sb.blockLog)
	case sb.bytesUsed > uint64(size):
		return nil, corrupt("claims %d bytes, the file holds %d", sb.bytesUsed, size)
	case sb.inodeTable >= sb.bytesUsed || sb.dirTable >= sb.bytesUsed || sb.inodeTable >= sb.dirTable:
		return nil, corrupt("inode table at %d and directory table at %d do not fit %d bytes", sb.inodeTable, sb.dirTable, sb.bytesUsed)
	}
	if sb.compression != compGzip {
		name := compressors[sb.compression]
		if name == "" {
			name = fmt.Sprintf("compressor %d", sb.compression)
		}
		return nil, fmt.Errorf("%w: the image is compressed with %s; this reader takes gzip, RAUC's default (build the bundle without --mksquashfs-args=-comp …)", ErrCompression, name)
	}
	return &squashFS{r: r, size: int64(sb.bytesUsed), sb: sb}, nil
}

// readAt reads exactly n bytes at off within the image.
func (fs *squashFS) readAt(off int64, n int) ([]byte, error) {
	if off < 0 || n < 0 || off+int64(n) > fs.size {
		return nil, corrupt("a read of %d bytes at %d runs past the image's %d bytes", n, off, fs.size)
	}
	b := make([]byte, n)
	if _, err := fs.r.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("raucb: reading the squashfs image at %d: %w", off, err)
	}
	return b, nil
}

// inflate decompresses a gzip (zlib) block of at most max bytes.
func inflate(b []byte, max int) ([]byte, error) {
	zr, err := zlib.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, corrupt("a compressed block does not decompress: %v", err)
	}
	defer zr.Close()
	out, err := io.ReadAll(io.LimitReader(zr, int64(max)+1))
	if err != nil {
		return nil, corrupt("a compressed block does not decompress: %v", err)
	}
	if len(out) > max {
		return nil, corrupt("a compressed block inflates to more than %d bytes", max)
	}
	return out, nil
}

// metaBlock reads the metadata block at off: its content and where the next
// one starts.
func (fs *squashFS) metaBlock(off int64) ([]byte, int64, error) {
	h, err := fs.readAt(off, 2)
	if err != nil {
		return nil, 0, err
	}
	hdr := binary.LittleEndian.Uint16(h)
	n := int(hdr &^ metaUncompBit)
	if n == 0 || n > metaMax {
		return nil, 0, corrupt("metadata block at %d has length %d", off, n)
	}
	b, err := fs.readAt(off+2, n)
	if err != nil {
		return nil, 0, err
	}
	if hdr&metaUncompBit == 0 {
		if b, err = inflate(b, metaMax); err != nil {
			return nil, 0, err
		}
	}
	return b, off + 2 + int64(n), nil
}

// metaReader reads a stream of metadata blocks from a reference into a
// table.
type metaReader struct {
	fs     *squashFS
	next   int64
	buf    []byte
	blocks int
}

func (fs *squashFS) meta(table uint64, ref uint64) (*metaReader, error) {
	blk, off := int64(ref>>16), int(ref&0xffff)
	m := &metaReader{fs: fs, next: int64(table) + blk}
	if err := m.fill(); err != nil {
		return nil, err
	}
	if off > len(m.buf) {
		return nil, corrupt("reference %#x points past its metadata block of %d bytes", ref, len(m.buf))
	}
	m.buf = m.buf[off:]
	return m, nil
}

func (m *metaReader) fill() error {
	if m.blocks++; m.blocks > maxMetaBlocks {
		return corrupt("a metadata stream runs over %d blocks", maxMetaBlocks)
	}
	b, next, err := m.fs.metaBlock(m.next)
	if err != nil {
		return err
	}
	m.buf = append(m.buf, b...)
	m.next = next
	return nil
}

func (m *metaReader) read(n int) ([]byte, error) {
	for len(m.buf) < n {
		if err := m.fill(); err != nil {
			return nil, err
		}
	}
	b := m.buf[:n]
	m.buf = m.buf[n:]
	return b, nil
}

// readFile returns the content of the regular file name in the image's root
// directory, which must hold at most max bytes.
func (fs *squashFS) readFile(name string, max int) ([]byte, error) {
	ref, err := fs.lookup(name)
	if err != nil {
		return nil, err
	}
	m, err := fs.meta(fs.sb.inodeTable, ref)
	if err != nil {
		return nil, err
	}
	h, err := m.read(inodeHeaderSize)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	var start, fileSize uint64
	var frag, fragOff uint32
	switch t := le.Uint16(h); t {
	case inodeBasicFile:
		b, err := m.read(16)
		if err != nil {
			return nil, err
		}
		start, frag, fragOff, fileSize = uint64(le.Uint32(b)), le.Uint32(b[4:]), le.Uint32(b[8:]), uint64(le.Uint32(b[12:]))
	case inodeExtFile:
		b, err := m.read(40)
		if err != nil {
			return nil, err
		}
		start, fileSize, frag, fragOff = le.Uint64(b), le.Uint64(b[8:]), le.Uint32(b[28:]), le.Uint32(b[32:])
	default:
		return nil, corrupt("%s is not a regular file (inode type %d)", name, t)
	}
	if fileSize > uint64(max) {
		return nil, fmt.Errorf("%w: %s has %d bytes, more than the %d allowed", ErrFormat, name, fileSize, max)
	}
	bs := uint64(fs.sb.blockSize)
	nblocks := fileSize / bs
	if frag == noFragment && fileSize%bs != 0 {
		nblocks++
	}
	sizes, err := m.read(int(nblocks) * 4)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, fileSize)
	pos := int64(start)
	for i := range int(nblocks) {
		e := le.Uint32(sizes[4*i:])
		n := int(e &^ dataUncompBit)
		want := int(min(bs, fileSize-uint64(len(out))))
		if n == 0 { // a sparse block
			out = append(out, make([]byte, want)...)
			continue
		}
		b, err := fs.dataBlock(pos, n, e&dataUncompBit == 0)
		if err != nil {
			return nil, err
		}
		if len(b) < want {
			return nil, corrupt("block %d of %s holds %d bytes, want %d", i, name, len(b), want)
		}
		out = append(out, b[:want]...)
		pos += int64(n)
	}
	if tail := int(fileSize - uint64(len(out))); tail > 0 {
		if frag == noFragment {
			return nil, corrupt("%s ends %d bytes short and has no fragment", name, tail)
		}
		fb, err := fs.fragment(frag)
		if err != nil {
			return nil, err
		}
		if uint64(fragOff)+uint64(tail) > uint64(len(fb)) {
			return nil, corrupt("the tail of %s (%d bytes at %d) runs past fragment %d of %d bytes", name, tail, fragOff, frag, len(fb))
		}
		out = append(out, fb[fragOff:int(fragOff)+tail]...)
	}
	return out, nil
}

func (fs *squashFS) dataBlock(pos int64, n int, compressed bool) ([]byte, error) {
	if n > int(fs.sb.blockSize)+metaMax {
		return nil, corrupt("a data block of %d bytes", n)
	}
	b, err := fs.readAt(pos, n)
	if err != nil {
		return nil, err
	}
	if compressed {
		return inflate(b, int(fs.sb.blockSize))
	}
	return b, nil
}

// fragment returns fragment block i.
func (fs *squashFS) fragment(i uint32) ([]byte, error) {
	if i >= fs.sb.fragments {
		return nil, corrupt("fragment %d of %d", i, fs.sb.fragments)
	}
	ptr, err := fs.readAt(int64(fs.sb.fragTable)+8*int64(i/fragsPerBlock), 8)
	if err != nil {
		return nil, err
	}
	blk, _, err := fs.metaBlock(int64(binary.LittleEndian.Uint64(ptr)))
	if err != nil {
		return nil, err
	}
	off := int(i%fragsPerBlock) * fragEntryLen
	if off+fragEntryLen > len(blk) {
		return nil, corrupt("fragment entry %d past its table block", i)
	}
	start := binary.LittleEndian.Uint64(blk[off:])
	e := binary.LittleEndian.Uint32(blk[off+8:])
	if start > uint64(fs.size) {
		return nil, corrupt("fragment %d starts at %d, past the image", i, start)
	}
	return fs.dataBlock(int64(start), int(e&^dataUncompBit), e&dataUncompBit == 0)
}

// lookup finds name in the root directory and returns its inode reference.
func (fs *squashFS) lookup(name string) (uint64, error) {
	m, err := fs.meta(fs.sb.inodeTable, fs.sb.rootInode)
	if err != nil {
		return 0, err
	}
	h, err := m.read(inodeHeaderSize)
	if err != nil {
		return 0, err
	}
	le := binary.LittleEndian
	var start uint32
	var listing int
	var off uint16
	switch t := le.Uint16(h); t {
	case inodeBasicDir:
		b, err := m.read(16)
		if err != nil {
			return 0, err
		}
		start, listing, off = le.Uint32(b), int(le.Uint16(b[8:])), le.Uint16(b[10:])
	case inodeExtDir:
		b, err := m.read(24)
		if err != nil {
			return 0, err
		}
		listing, start, off = int(le.Uint32(b[4:])), le.Uint32(b[8:]), le.Uint16(b[18:])
	default:
		return 0, corrupt("the root inode is not a directory (type %d)", t)
	}
	// The listing's size counts 3 bytes that are not there ("." and "..").
	listing -= 3
	if listing < 0 || listing > maxMetaBlocks*metaMax {
		return 0, corrupt("root directory listing of %d bytes", listing)
	}
	d, err := fs.meta(fs.sb.dirTable, uint64(start)<<16|uint64(off))
	if err != nil {
		return 0, err
	}
	for listing > 0 {
		hdr, err := d.read(12)
		if err != nil {
			return 0, err
		}
		listing -= 12
		count := int(le.Uint32(hdr)) + 1
		blk := le.Uint32(hdr[4:])
		if count > maxDirEntries {
			return 0, corrupt("a directory header announces %d entries", count)
		}
		for range count {
			e, err := d.read(8)
			if err != nil {
				return 0, err
			}
			n := int(le.Uint16(e[6:])) + 1
			nm, err := d.read(n)
			if err != nil {
				return 0, err
			}
			listing -= 8 + n
			if string(nm) == name {
				return uint64(blk)<<16 | uint64(le.Uint16(e)), nil
			}
		}
	}
	return 0, fmt.Errorf("%w: the image has no %s in its root directory", ErrFormat, name)
}
