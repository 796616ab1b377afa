package hugepages

import (
	"context"
	"errors"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/awsfota/awsfota/clock"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseMaps(t *testing.T) {
	maps := strings.Join([]string{
		"00400000-00597000 r-xp 00000000 fe:00 10101219                           /tmp/exe",
		"00597000-005a2000 rw-p 00197000 fe:00 10101219                           /tmp/exe",
		"005a2000-005d8000 rw-p 00000000 00:00 0 ",                                              // runtime data, unaligned
		"27bf5bc00000-27bf62800000 rw-p 00000000 00:00 0 ",                                      // the heap: 108 MiB at 4 MiB
		"27bf62800000-27bf64000000 ---p 00000000 00:00 0 ",                                      // reserved, not mapped
		"7fcfe5300000-7fcfe7400000 rw-p 00000000 00:00 0 ",                                      // 33 MiB, 1 MiB aligned
		"c000000000-c000400000 rw-p 00000000 00:00 0                          [anon: Go: heap]", // named
		"c000800000-c000c00000 rw-p 00000000 00:00 0                          [stack]",
		"c001000000-c001400000 rw-s 00000000 00:01 1234                       /dev/zero (deleted)",
		"c002000000-c002000000 rw-p 00000000 00:00 0 ", // empty
		"",
		"7ffd1d6e5000-7ffd1d706000 rw-p 00000000 00:00 0                          [stack]",
	}, "\n")
	got, err := ParseMaps(strings.NewReader(maps))
	if err != nil {
		t.Fatal(err)
	}
	want := []Range{{0x27bf5bc00000, 0x27bf62800000}, {0xc000000000, 0xc000400000}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("ParseMaps = %x, want %x", got, want)
	}
	if got[0].Len() != 108<<20 {
		t.Fatalf("Len = %d", got[0].Len())
	}
}

func TestParseMapsErrors(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"c000000000-c000400000 rw-p", "at least five fields"},
		{"c000000000 rw-p 0 00:00 0", "no '-'"},
		{"zz-c000400000 rw-p 0 00:00 0", "start address"},
		{"c000000000-zz rw-p 0 00:00 0", "end address"},
		{"c000400000-c000000000 rw-p 0 00:00 0", "ends before it starts"},
	} {
		_, err := ParseMaps(strings.NewReader("c000000000-c000400000 rw-p 0 00:00 0\n" + tc.line + "\n"))
		if !errors.Is(err, ErrMaps) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%q: err = %v, want ErrMaps about %q on line 2", tc.line, err, tc.want)
		}
	}
}

func FuzzParseMaps(f *testing.F) {
	f.Add("27bf5bc00000-27bf62800000 rw-p 00000000 00:00 0 \n00400000-00597000 r-xp 00000000 fe:00 1 /x\n")
	f.Add("c000000000-c000400000 rw-p 0 00:00 0 [anon: Go: heap]")
	f.Add("-\n\n x")
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParseMaps(strings.NewReader(s))
		if err != nil {
			if !errors.Is(err, ErrMaps) && !strings.Contains(err.Error(), "reading maps") {
				t.Fatalf("error %v neither ErrMaps nor a read error", err)
			}
			return
		}
		for _, r := range rs {
			if r.Start%chunk != 0 || r.Len()%chunk != 0 || r.Len() == 0 {
				t.Fatalf("range %x is not whole heap chunks", r)
			}
		}
	})
}

func TestMode(t *testing.T) {
	for in, want := range map[string]string{
		"always [madvise] never\n": "madvise",
		"[always] madvise never":   "always",
		"always madvise [never]":   "never",
		"madvise":                  "",
		"[madvise":                 "",
		"":                         "",
	} {
		if got := Mode(in); got != want {
			t.Errorf("Mode(%q) = %q, want %q", in, got, want)
		}
	}
}

// fakeOS is a heap that grows when the test says so.
type fakeOS struct {
	mu     sync.Mutex
	heap   []Range
	advice map[Range]bool // what madvise was last told for each range
	calls  []string
}

func (f *fakeOS) system() system {
	return system{
		mapped: func() uint64 {
			f.mu.Lock()
			defer f.mu.Unlock()
			var n uint64
			for _, r := range f.heap {
				n += r.Len()
			}
			return n
		},
		maps: func() ([]Range, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			return append([]Range(nil), f.heap...), nil
		},
		advise: func(r Range, huge bool) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.advice[r] = huge
			f.calls = append(f.calls, strconv.FormatBool(huge)+" "+strconv.FormatUint(r.Start>>20, 10))
			return nil
		},
	}
}

func (f *fakeOS) grow(r Range) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.heap = append(f.heap, r)
}

func (f *fakeOS) took() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func TestAdvisorFollowsGrowthAndWithdraws(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
	fos := &fakeOS{heap: []Range{{0, 4 << 20}}, advice: map[Range]bool{}}
	a := start(Options{Clock: clk}, fos.system(), "")
	defer a.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// step fires the Advisor's timer and waits until it has armed the next.
	step := func() time.Duration {
		t.Helper()
		if err := clk.WaitTimers(ctx, 1); err != nil {
			t.Fatal(err)
		}
		at, _ := clk.NextDeadline()
		d := at.Sub(clk.Now())
		clk.Set(at)
		if err := clk.WaitTimers(ctx, 1); err != nil {
			t.Fatal(err)
		}
		return d
	}
	step()
	if got := fos.took(); len(got) != 1 || got[0] != "true 0" {
		t.Fatalf("at start: madvise calls %q, want the heap's one mapping advised", got)
	}
	// The heap grows: the new mapping is advised at the next look, and the
	// looks come every 2 ms while it grows.
	fos.grow(Range{8 << 20, 16 << 20})
	step()
	if got := fos.took(); len(got) != 1 || got[0] != "true 8" {
		t.Fatalf("after growth: madvise calls %q, want the new mapping advised", got)
	}
	if at, _ := clk.NextDeadline(); at.Sub(clk.Now()) != 2*time.Millisecond {
		t.Fatalf("next look in %v, want 2ms while growing", at.Sub(clk.Now()))
	}
	if s := a.Stats(); !s.Active || s.Advised != 12<<20 || s.Peak != 12<<20 || s.Scans != 2 {
		t.Fatalf("Stats = %+v", s)
	}
	// Quiet: the looks stay every 2 ms for a second, then slow down to
	// 100 ms; after 5 s the advice is withdrawn.
	var waited time.Duration
	var last time.Duration
	for waited < 5*time.Second {
		last = step()
		waited += last
		if waited < time.Second && last != 2*time.Millisecond {
			t.Fatalf("%v after growth: looked after %v, want 2ms for a second", waited, last)
		}
		if waited >= 5*time.Second {
			break
		}
		if got := fos.took(); len(got) != 0 {
			t.Fatalf("after %v quiet: madvise calls %q, want none yet", waited, got)
		}
	}
	if last != 100*time.Millisecond {
		t.Fatalf("looks every %v when quiet, want 100ms", last)
	}
	got := fos.took()
	if len(got) != 2 || !strings.HasPrefix(got[0], "false") || !strings.HasPrefix(got[1], "false") {
		t.Fatalf("after 5 s quiet: madvise calls %q, want both mappings withdrawn", got)
	}
	if s := a.Stats(); s.Advised != 0 || s.Withdrawn != 1 || s.Peak != 12<<20 {
		t.Fatalf("Stats after withdrawal = %+v", s)
	}
	// Growth again: the whole heap is advised once more.
	fos.grow(Range{20 << 20, 24 << 20})
	step()
	if got := fos.took(); len(got) != 3 {
		t.Fatalf("growth after withdrawal: madvise calls %q, want the three mappings advised", got)
	}
}

func TestAdvisorInactive(t *testing.T) {
	a := start(Options{}, system{}, "no huge pages in this test")
	a.Stop()
	a.Stop() // twice is fine
	if s := a.Stats(); s.Active || s.Reason != "no huge pages in this test" {
		t.Fatalf("Stats = %+v", s)
	}
}

// TestHeapGetsHugePages runs the real Advisor on this process: a heap that
// grows by 256 MiB must end up partly in huge pages.
func TestHeapGetsHugePages(t *testing.T) {
	// Free memory goes back to the system first: what the test touches next
	// is faulted in afresh, under the advice given at Start.
	runtime.GC()
	debug.FreeOSMemory()
	before := anonHuge(t)
	a := Start(Options{})
	defer a.Stop()
	if s := a.Stats(); !s.Active {
		// Only a Linux kernel set to "madvise" can show the effect; CI's is.
		t.Skipf("huge pages cannot be advised here: %s", s.Reason)
	}
	var keep [][]byte
	for range 256 {
		b := make([]byte, 1<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		keep = append(keep, b)
		runtime.Gosched()
	}
	after := anonHuge(t)
	runtime.KeepAlive(keep)
	if s := a.Stats(); s.Err != nil || s.Peak == 0 {
		t.Fatalf("Stats = %+v", s)
	}
	if after < before+16<<20 {
		t.Fatalf("AnonHugePages grew by %d KiB for 256 MiB of heap, want at least 16 MiB", (after-before)>>10)
	}
	t.Logf("%d MiB of 256 in huge pages", (after-before)>>20)
}

func anonHuge(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "AnonHugePages:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no AnonHugePages in smaps_rollup")
	return 0
}
