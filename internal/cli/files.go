package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/awsfota/awsfota/atomicfile"
)

// openRegular opens a regular file and returns its size.
func openRegular(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%s is not a regular file", path)
	}
	return f, st.Size(), nil
}

// writeFileAtomic writes path through write, to a temporary file beside it
// (readable by its owner only until it is complete) that replaces path with
// permissions perm only when write succeeded; on failure path is untouched.
func writeFileAtomic(path string, perm os.FileMode, write func(io.Writer) error) error {
	return atomicfile.Write(path, perm, write)
}
