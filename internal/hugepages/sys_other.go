//go:build !linux

package hugepages

func osSystem() (system, string) {
	return system{}, "transparent huge pages are a Linux feature"
}
