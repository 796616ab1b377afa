package hugepages

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

const enabledFile = "/sys/kernel/mm/transparent_hugepage/enabled"

// osSystem is Linux's: madvise on the mappings /proc/self/maps shows, where
// the kernel's setting is "madvise".
func osSystem() (system, string) {
	b, err := os.ReadFile(enabledFile)
	if err != nil {
		return system{}, fmt.Sprintf("no transparent huge pages here (%v)", err)
	}
	switch m := Mode(string(b)); m {
	case "madvise":
	case "always":
		return system{}, "the kernel gives huge pages without advice (transparent_hugepage/enabled: always)"
	default:
		return system{}, fmt.Sprintf("the kernel gives no huge pages (transparent_hugepage/enabled: %s)", strings.TrimSpace(string(b)))
	}
	return system{mapped: mappedBytes, maps: selfMaps, advise: madvise}, ""
}

func selfMaps() ([]Range, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseMaps(f)
}

// The advice's values, the same on every Linux architecture Go supports
// (package syscall does not define them on all).
const (
	madvHugePage   = 14
	madvNoHugePage = 15
)

func madvise(r Range, huge bool) error {
	advice := madvHugePage
	if !huge {
		advice = madvNoHugePage
	}
	// The range is the kernel's own mapping; nothing of Go's is passed.
	_, _, e := syscall.Syscall(syscall.SYS_MADVISE, uintptr(r.Start), uintptr(r.Len()), uintptr(advice))
	if e != 0 {
		return fmt.Errorf("hugepages: madvise(%#x, %d MiB): %w", r.Start, r.Len()>>20, e)
	}
	return nil
}
