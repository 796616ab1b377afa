// Package hugepages asks Linux to back the Go heap with transparent huge
// pages while the heap grows fast: a local cloud accepting thousands of
// devices, a simulated fleet connecting them.
//
// Why: a process that grows by a gigabyte touches a quarter of a million
// fresh 4 KiB pages, and each first touch is a page fault. On a virtual
// machine whose page-table updates trap to the hypervisor (paravirtualized
// guests) a fault costs about 10 µs instead of 1: measured, a sixth of the
// CPU of a 10 000-device connection storm. With huge pages a fault maps
// 2 MiB at once. Most distributions set transparent huge pages to
// "madvise": only memory a program asks for with madvise(MADV_HUGEPAGE) gets
// them, and the Go runtime does not ask for its heap (since Go 1.21.1).
//
// An Advisor watches the memory the runtime has mapped (runtime/metrics);
// when it grows, it reads /proc/self/maps and advises huge pages on the heap's
// new mappings; once the heap has stopped growing for a while it withdraws
// the advice (MADV_NOHUGEPAGE), so that the kernel's background collapsing
// (khugepaged) does not later fill sparse regions of an idle heap with whole
// 2 MiB pages. Pages already huge stay huge; the runtime's scavenger still
// returns free memory to the system, splitting them.
//
// Nothing happens where the kernel's setting is not "madvise" ("always"
// needs no advice, "never" refuses it), nor off Linux.
//
// It imports only the standard library; the cloud and the fleet simulator's
// commands start it, no library package may.
package hugepages

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// chunk is the granularity in which the Go runtime maps heap memory on
// 64-bit Linux (pallocChunkBytes, 4 MiB): the heap's mappings start at a
// multiple of it and their sizes are multiples of it. Other anonymous
// mappings (thread stacks, the runtime's own metadata) almost never are, and
// are too small to matter when they are.
const chunk = 4 << 20

// Range is a mapping of the address space, [Start, End).
type Range struct{ Start, End uint64 }

// Len is the range's size in bytes.
func (r Range) Len() uint64 { return r.End - r.Start }

// ErrMaps is wrapped by ParseMaps's errors: a line of /proc/self/maps it
// could not read.
var ErrMaps = errors.New("hugepages: unreadable /proc/self/maps line")

// ParseMaps reads /proc/PID/maps and returns the mappings that look like the
// Go heap: private, anonymous, readable and writable, starting at a multiple
// of 4 MiB and a multiple of 4 MiB long. A line it cannot read is an error
// (ErrMaps) naming the line.
func ParseMaps(r io.Reader) ([]Range, error) {
	var out []Range
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		rng, ok, err := parseLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%w %d: %v", ErrMaps, n, err)
		}
		if ok {
			out = append(out, rng)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("hugepages: reading maps: %w", err)
	}
	return out, nil
}

// parseLine reads one maps line: "start-end perms offset dev inode [path]".
func parseLine(line string) (Range, bool, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return Range{}, false, nil
	}
	if len(f) < 5 {
		return Range{}, false, fmt.Errorf("%q: want at least five fields", clip(line))
	}
	lo, hi, ok := strings.Cut(f[0], "-")
	if !ok {
		return Range{}, false, fmt.Errorf("%q: the address range has no '-'", clip(line))
	}
	start, err := strconv.ParseUint(lo, 16, 64)
	if err != nil {
		return Range{}, false, fmt.Errorf("%q: start address: %v", clip(line), err)
	}
	end, err := strconv.ParseUint(hi, 16, 64)
	if err != nil {
		return Range{}, false, fmt.Errorf("%q: end address: %v", clip(line), err)
	}
	if end < start {
		return Range{}, false, fmt.Errorf("%q: the range ends before it starts", clip(line))
	}
	// Anonymous: inode 0 and no path, or a name the kernel gives anonymous
	// memory ("[anon: Go: heap]" where the runtime can name its mappings).
	anon := f[4] == "0" && (len(f) == 5 || strings.HasPrefix(f[5], "[anon:"))
	if f[1] != "rw-p" || !anon || start%chunk != 0 || (end-start)%chunk != 0 || end == start {
		return Range{}, false, nil
	}
	return Range{start, end}, true, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Mode reads the kernel's setting for transparent huge pages from the
// contents of /sys/kernel/mm/transparent_hugepage/enabled ("always madvise
// [never]"): the word in brackets, or "" if there is none.
func Mode(enabled string) string {
	_, rest, ok := strings.Cut(enabled, "[")
	if !ok {
		return ""
	}
	m, _, ok := strings.Cut(rest, "]")
	if !ok {
		return ""
	}
	return m
}
