// Package growstack grows the calling goroutine's stack in one step before
// deep work, such as a TLS handshake.
//
// A goroutine starts with a small stack (2 KiB, or the runtime's recent
// average) that the runtime doubles each time a call does not fit, copying
// it and adjusting every frame on it. A TLS handshake with ECDSA
// certificates goes about 16 KiB deep, and its doublings happen deep in the
// handshake (in the signature check's arithmetic), where the frames to
// adjust are many. Grow makes the room in one copy of a shallow stack.
//
// It pays on a goroutine that does the deep work and ends, as the broker's
// and the device library's handshake goroutines do (the grown stack goes
// back to the runtime for the next one): three storm pairs of 10 000
// devices, 0.92x the time. On a goroutine that lives on, the collector
// shrinks an idle stack and the next deep call grows it again: measured,
// no gain.
//
// It imports nothing: any package may use it.
package growstack

// Size is the stack room Grow makes: the deepest of the paths it serves
// (a TLS 1.3 handshake, client or server, with ECDSA certificates) fits.
const Size = 16 << 10

// Grow makes at least Size bytes of stack room below its caller.
//
//go:noinline
func Grow() {
	var room [Size]byte
	touch(room[:])
}

// touch keeps room on the stack and in use: the compiler can neither drop
// it nor move it to the heap.
//
//go:noinline
func touch(b []byte) { b[len(b)-1] = 1 }
