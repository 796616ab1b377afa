package mcuboot

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
)

// Version is an image version: major.minor.revision+build.
type Version struct {
	Major    uint8
	Minor    uint8
	Revision uint16
	Build    uint32
}

// ErrInvalidVersion: a version string is not major.minor.revision+build
// with numbers that fit their fields.
var ErrInvalidVersion = errors.New("invalid image version")

// The same grammar as imgtool: numbers without leading zeros, build optional.
var versionRE = regexp.MustCompile(`^(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*)(?:\+(0|[1-9][0-9]*))?)?)?$`)

// ParseVersion parses "1", "1.2", "1.2.3" or "1.2.3+4" as imgtool does.
func ParseVersion(s string) (Version, error) {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return Version{}, fmt.Errorf("%w %q: want major.minor.revision+build with later parts optional, e.g. 1.2.3+4", ErrInvalidVersion, s)
	}
	field := func(i int, bits int, name string) (uint64, error) {
		if m[i] == "" {
			return 0, nil
		}
		v, err := strconv.ParseUint(m[i], 10, bits)
		if err != nil {
			return 0, fmt.Errorf("%w %q: %s %s does not fit in %d bits", ErrInvalidVersion, s, name, m[i], bits)
		}
		return v, nil
	}
	var v Version
	major, err := field(1, 8, "major")
	if err != nil {
		return v, err
	}
	minor, err := field(2, 8, "minor")
	if err != nil {
		return v, err
	}
	rev, err := field(3, 16, "revision")
	if err != nil {
		return v, err
	}
	build, err := field(4, 32, "build")
	if err != nil {
		return v, err
	}
	return Version{uint8(major), uint8(minor), uint16(rev), uint32(build)}, nil
}

// String renders v as "1.2.3", or "1.2.3+4" when the build number is not 0.
func (v Version) String() string {
	if v.Build == 0 {
		return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Revision)
	}
	return fmt.Sprintf("%d.%d.%d+%d", v.Major, v.Minor, v.Revision, v.Build)
}

// Compare returns -1, 0 or +1 as v is older than, equal to or newer than w,
// comparing major, minor, revision and then build.
func (v Version) Compare(w Version) int {
	a := [4]uint64{uint64(v.Major), uint64(v.Minor), uint64(v.Revision), uint64(v.Build)}
	b := [4]uint64{uint64(w.Major), uint64(w.Minor), uint64(w.Revision), uint64(w.Build)}
	for i := range a {
		switch {
		case a[i] < b[i]:
			return -1
		case a[i] > b[i]:
			return 1
		}
	}
	return 0
}
