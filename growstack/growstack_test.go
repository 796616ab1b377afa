package growstack

import (
	"testing"
	"unsafe"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// deep goes depth frames of 1 KiB down and tells whether the stack of the
// calling goroutine moved meanwhile (the runtime copied it to grow it): the
// address of a local of the caller's frame changes when it does.
func deep(depth int, base *uintptr) bool {
	var frame [1 << 10]byte
	touch(frame[:])
	if depth > 0 {
		return deep(depth-1, base)
	}
	return false
}

//go:noinline
func movedBy(work func()) bool {
	var here byte
	before := uintptr(unsafe.Pointer(&here))
	work()
	return uintptr(unsafe.Pointer(&here)) != before
}

// TestGrowMakesRoom: on a fresh goroutine, going 12 KiB deep moves the
// stack (it grows from its small start); after Grow it does not.
func TestGrowMakesRoom(t *testing.T) {
	run := func(grow bool) bool {
		moved := make(chan bool)
		go func() {
			if grow {
				Grow()
			}
			moved <- movedBy(func() { deep(12, nil) })
		}()
		return <-moved
	}
	if !run(false) {
		t.Fatal("a fresh goroutine went 12 KiB deep without its stack moving: the test cannot tell Grow's effect")
	}
	if run(true) {
		t.Fatal("after Grow, going 12 KiB deep still moved the stack")
	}
}

// BenchmarkHandshakeDepth: a fresh goroutine that goes Size-3 KiB deep in
// 256-byte frames, with and without Grow first.
func BenchmarkHandshakeDepth(b *testing.B) {
	for _, grow := range []bool{false, true} {
		name := "as-is"
		if grow {
			name = "grown"
		}
		b.Run(name, func(b *testing.B) {
			done := make(chan struct{})
			for b.Loop() {
				go func() {
					if grow {
						Grow()
					}
					small((Size - 3<<10) / 256)
					done <- struct{}{}
				}()
				<-done
			}
		})
	}
}

func small(depth int) {
	var frame [256 - 64]byte
	touch(frame[:])
	if depth > 0 {
		small(depth - 1)
	}
}
