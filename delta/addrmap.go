package delta

import (
	"slices"
	"sort"
)

// maxMapEntries bounds the address map a patch may carry, and so Apply's
// memory for it (8 bytes an entry).
const maxMapEntries = 1 << 14

// addrMap maps a base offset to the result offset of the same byte: entry k
// says that from base offset start[k] on (to the next entry's start) the
// result offset is the base offset plus delta[k]. Offsets before the first
// entry use delta 0.
type addrMap struct {
	start []uint32
	dlt   []int32
}

func (m addrMap) delta(off int64) int64 {
	// The last entry whose start is ≤ off.
	k := sort.Search(len(m.start), func(i int) bool { return int64(m.start[i]) > off }) - 1
	if k < 0 {
		return 0
	}
	return int64(m.dlt[k])
}

// buildMap derives the address map from the copies of recs: each base
// byte a copy takes maps to where the copy puts it, the longest copy
// winning where copies overlap; runs shorter than minRun are merged into
// their neighbours, and runs are merged until at most maxMapEntries remain.
func buildMap(oldSize int, recs []record, minRun int) addrMap {
	type seg struct{ bp, tp, n int64 }
	var segs []seg
	var bp, tp int64
	for _, r := range recs {
		bp += r.seek
		if r.copy > 0 {
			segs = append(segs, seg{bp, tp, r.copy})
		}
		bp += r.copy
		tp += r.copy + r.insert
	}
	// Paint the base, shortest copies first so that the longest win.
	slices.SortStableFunc(segs, func(a, b seg) int { return int(a.n - b.n) })
	const none = -1 << 31
	paint := make([]int32, oldSize)
	for i := range paint {
		paint[i] = none
	}
	for _, s := range segs {
		d := int32(s.tp - s.bp)
		for i := s.bp; i < s.bp+s.n; i++ {
			paint[i] = d
		}
	}
	type run struct {
		start int
		d     int32
	}
	var runs []run
	for i, d := range paint {
		if d == none {
			continue
		}
		if len(runs) == 0 || runs[len(runs)-1].d != d {
			runs = append(runs, run{i, d})
		}
	}
	for {
		// Drop runs shorter than minRun (the previous run extends over
		// them), then merge equal neighbours.
		var out []run
		for k, r := range runs {
			end := oldSize
			if k+1 < len(runs) {
				end = runs[k+1].start
			}
			if end-r.start < minRun && k > 0 && k+1 < len(runs) {
				continue
			}
			if len(out) > 0 && out[len(out)-1].d == r.d {
				continue
			}
			out = append(out, r)
		}
		runs = out
		if len(runs) <= maxMapEntries {
			break
		}
		// Keep the longest runs: the next minimum is the length of the
		// maxMapEntries-th longest (and one more when they tie).
		lens := make([]int, len(runs))
		for k := range runs {
			end := oldSize
			if k+1 < len(runs) {
				end = runs[k+1].start
			}
			lens[k] = end - runs[k].start
		}
		slices.Sort(lens)
		minRun = max(lens[len(lens)-maxMapEntries], minRun+1)
	}
	m := addrMap{start: make([]uint32, len(runs)), dlt: make([]int32, len(runs))}
	for k, r := range runs {
		m.start[k], m.dlt[k] = uint32(r.start), r.d
	}
	return m
}
