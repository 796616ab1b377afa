package sim

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/awsfota/awsfota/device/dfu/mcubootslot"
	"github.com/awsfota/awsfota/device/flash"
	"github.com/awsfota/awsfota/mcuboot"
)

// swapCase is a boot that swaps: the slots before it and what must run after.
type swapCase struct {
	name           string
	kind           mcuboot.SwapType
	primary, sec   []byte // the slots' contents before the boot
	run, other     []byte // the image that must run after, and the one left in the secondary slot
	confirmedAfter bool
}

// swapCases builds a test swap, a permanent swap and a revert (of the test
// swap's result) over the small slots.
func swapCases(t *testing.T) []swapCase {
	t.Helper()
	old, _ := AppImage("1.0.0", 9000)
	img, _ := AppImage("1.0.1", 20000)
	var cases []swapCase
	for _, perm := range []bool{false, true} {
		p, s, b := slots(t, old)
		stage(t, s, img, perm)
		c := swapCase{name: "test-swap", kind: mcuboot.SwapTest, primary: p.Bytes(), sec: s.Bytes(), run: img, other: old, confirmedAfter: perm}
		if perm {
			c.name, c.kind = "permanent-swap", mcuboot.SwapPerm
		}
		cases = append(cases, c)
		if !perm {
			if res, err := b.Boot(); err != nil || res.Swap != mcuboot.SwapTest {
				t.Fatalf("test swap: %+v %v", res, err)
			}
			cases = append(cases, swapCase{name: "revert", kind: mcuboot.SwapRevert, primary: p.Bytes(), sec: s.Bytes(), run: old, other: img, confirmedAfter: true})
		}
	}
	return cases
}

// memSlots returns slots holding primary and secondary.
func memSlots(t *testing.T, primary, secondary []byte) (*flash.Mem, *flash.Mem) {
	t.Helper()
	p, _ := flash.NewMem(smallGeo)
	s, _ := flash.NewMem(smallGeo)
	if _, err := p.WriteAt(primary, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteAt(secondary, 0); err != nil {
		t.Fatal(err)
	}
	return p, s
}

// testSwapDone reports whether the primary slot holds a completed test swap
// (copy_done written, image_ok not): the state a later boot reverts.
func testSwapDone(p *flash.Mem) bool {
	st, _ := mcuboot.ReadTrailer(p, mcuboot.Layout{SlotSize: smallGeo.Size})
	return st.Magic == mcuboot.MagicGood && st.CopyDone == mcuboot.FlagSet && st.ImageOK == mcuboot.FlagUnset
}

// bootCut boots once on a supply cut after budget operations (< 0: never).
func bootCut(p, s *flash.Mem, budget int, seed uint64, forget bool) (BootResult, *Power, error) {
	pw := NewPowerSeed(budget, seed)
	b := &Bootloader{Primary: &powerFlash{p, pw}, Secondary: &powerFlash{s, pw}, forgetStatus: forget}
	res, err := b.Boot()
	return res, pw, err
}

// checkAfter boots the slots with steady power and checks that the right
// image runs, whole and valid, that the other one is whole in the secondary
// slot, and that the next boot does what it must (a test image reverts, a
// confirmed one stays). A test swap that completed before a cut (done) had
// its one boot: a later boot reverts it, as MCUboot does.
func checkAfter(p, s *flash.Mem, c swapCase, done bool) error {
	if c.kind == mcuboot.SwapTest && done {
		c.run, c.other, c.confirmedAfter = c.other, c.run, true
	}
	if _, err := (&Bootloader{Primary: p, Secondary: s}).Boot(); err != nil {
		return fmt.Errorf("boot after the cut: %w", err)
	}
	if !bytes.Equal(p.Bytes()[:len(c.run)], c.run) {
		return errors.New("the primary slot does not hold the expected image")
	}
	if !bytes.Equal(s.Bytes()[:len(c.other)], c.other) {
		return errors.New("the secondary slot does not hold the other image")
	}
	r, err := mcubootslot.NewPrimary(p, mcubootslot.Options{}).Running()
	if err != nil {
		return err
	}
	if r.Confirmed != c.confirmedAfter {
		return fmt.Errorf("running %s confirmed=%v, want %v", r.Version, r.Confirmed, c.confirmedAfter)
	}
	res, err := (&Bootloader{Primary: p, Secondary: s}).Boot()
	switch {
	case err != nil:
		return fmt.Errorf("second boot: %w", err)
	case !c.confirmedAfter && res.Swap != mcuboot.SwapRevert:
		return fmt.Errorf("an unconfirmed image did not revert: %v", res.Swap)
	case c.confirmedAfter && res.Swap != mcuboot.SwapNone:
		return fmt.Errorf("a confirmed image swapped again: %v", res.Swap)
	}
	return nil
}

// TestSwapSurvivesACutAtEveryOperation cuts the power at every flash
// operation of a test swap, a permanent swap and a revert — each on torn
// NOR flash: a cut erase leaves its sector undefined, a cut write a
// half-programmed byte — then cuts again at a random operation of the
// resumed boot, and powers up: the swap always completes, with both images
// whole and the expected one running.
func TestSwapSurvivesACutAtEveryOperation(t *testing.T) {
	for _, c := range swapCases(t) {
		t.Run(c.name, func(t *testing.T) {
			p, s := memSlots(t, c.primary, c.sec)
			res, meter, err := bootCut(p, s, -1, 0, false)
			if err != nil || res.Swap != c.kind {
				t.Fatalf("clean boot: %+v %v", res, err)
			}
			total := meter.Used()
			rng := rand.New(rand.NewPCG(uint64(c.kind), 13))
			resumed := 0
			for cut := 1; cut <= total; cut++ {
				p, s := memSlots(t, c.primary, c.sec)
				if _, _, err := bootCut(p, s, cut, uint64(cut), false); !errors.Is(err, ErrPowerCut) {
					t.Fatalf("cut at %d of %d: boot returned %v", cut, total, err)
				}
				if err := checkAfter(p, s, c, testSwapDone(p)); err != nil {
					t.Fatalf("cut at operation %d of %d: %v", cut, total, err)
				}
				// Again, with a second cut inside the resumed boot.
				p, s = memSlots(t, c.primary, c.sec)
				bootCut(p, s, cut, uint64(cut), false)
				done := testSwapDone(p)
				second := 1 + rng.IntN(total)
				res, _, err := bootCut(p, s, second, uint64(second)<<8, false)
				done = done || testSwapDone(p)
				if res.Resumed {
					resumed++
				}
				if err != nil && !errors.Is(err, ErrPowerCut) {
					t.Fatalf("cut at %d then %d: %v", cut, second, err)
				}
				if err := checkAfter(p, s, c, done); err != nil {
					t.Fatalf("cut at operation %d, then at %d of the next boot: %v", cut, second, err)
				}
			}
			t.Logf("%s: %d operations, each cut; %d boots resumed a swap", c.name, total, resumed)
			if resumed == 0 {
				t.Fatal("no boot ever resumed a swap: the cuts missed it")
			}
		})
	}
}

// TestSwapWithoutStatusBricks proves the test above would catch a
// bootloader that did not keep its progress: with the status writes turned
// off, some cut during a swap and some during a revert leave no bootable
// image.
func TestSwapWithoutStatusBricks(t *testing.T) {
	for _, c := range swapCases(t) {
		if c.kind == mcuboot.SwapPerm {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			p, s := memSlots(t, c.primary, c.sec)
			_, meter, err := bootCut(p, s, -1, 0, true)
			if err != nil {
				t.Fatalf("clean boot without status: %v", err)
			}
			if !bytes.Equal(p.Bytes()[:len(c.run)], c.run) || !bytes.Equal(s.Bytes()[:len(c.other)], c.other) {
				t.Fatal("without a cut the swap must still work")
			}
			bricks := 0
			for cut := 1; cut <= meter.Used(); cut++ {
				p, s := memSlots(t, c.primary, c.sec)
				bootCut(p, s, cut, uint64(cut), true)
				if _, _, err := bootCut(p, s, -1, 0, true); errors.Is(err, ErrNoBootableImage) {
					bricks++
				}
			}
			t.Logf("%s without status: %d of %d cuts brick the device", c.name, bricks, meter.Used())
			if bricks == 0 {
				t.Fatal("no cut bricked a bootloader that forgets its progress: the cut tests prove nothing")
			}
		})
	}
}

// TestTornFlash checks the power-cut model: a cut write programs a prefix
// and part of one byte, only ever clearing bits; a cut erase erases the
// sectors before one, leaves that one with bits set at random over its old
// value, and the sectors after untouched.
func TestTornFlash(t *testing.T) {
	geo := flash.Geometry{Size: 4 * 4096, SectorSize: 4096, WriteAlign: 4}
	for seed := uint64(0); seed < 50; seed++ {
		m, _ := flash.NewMem(geo)
		data := bytes.Repeat([]byte{0x00}, 64)
		f := &powerFlash{m, NewPowerSeed(1, seed)}
		if _, err := f.WriteAt(data, 100); !errors.Is(err, ErrPowerCut) {
			t.Fatalf("torn write: %v", err)
		}
		got := m.Bytes()[100:164]
		k := bytes.IndexFunc(got, func(r rune) bool { return r != 0 })
		if k < 0 {
			continue // the whole write landed
		}
		for i, b := range got[k+1:] {
			if b != 0xff {
				t.Fatalf("seed %d: byte %d after the torn one was programmed: %#x", seed, k+1+i, b)
			}
		}

		// An erase of three sectors holding zeros.
		m, _ = flash.NewMem(geo)
		m.WriteAt(make([]byte, geo.Size), 0)
		f = &powerFlash{m, NewPowerSeed(1, seed)}
		if err := f.Erase(0, 3*4096); !errors.Is(err, ErrPowerCut) {
			t.Fatalf("torn erase: %v", err)
		}
		b := m.Bytes()
		state := func(sec int) string {
			s := b[sec*4096 : (sec+1)*4096]
			switch {
			case bytes.Count(s, []byte{0xff}) == len(s):
				return "erased"
			case bytes.Count(s, []byte{0}) == len(s):
				return "old"
			}
			return "undefined"
		}
		seen := fmt.Sprint(state(0), state(1), state(2), state(3))
		valid := map[string]bool{}
		for k := 0; k < 3; k++ {
			for _, mid := range []string{"erased", "old", "undefined"} {
				st := []string{"old", "old", "old", "old"}
				for i := 0; i < k; i++ {
					st[i] = "erased"
				}
				st[k] = mid
				valid[fmt.Sprint(st[0], st[1], st[2], st[3])] = true
			}
		}
		if !valid[seen] {
			t.Fatalf("seed %d: torn erase left sectors %s", seed, seen)
		}
	}
}
