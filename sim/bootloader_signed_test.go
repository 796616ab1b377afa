package sim

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/device/flash"
	"github.com/awsfota/awsfota/iotjobs"
	"github.com/awsfota/awsfota/mcuboot"
)

// signedImage builds an application image signed with key (nil: unsigned).
func signedImage(t *testing.T, version string, size int, key *mcuboot.PrivateKey) []byte {
	t.Helper()
	v, err := mcuboot.ParseVersion(version)
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(size), uint64(v.Revision)))
	for i := range body {
		body[i] = byte(r.Uint32())
	}
	var out bytes.Buffer
	if _, err := mcuboot.Create(&out, bytes.NewReader(body), int64(size), mcuboot.CreateOptions{Version: v, PadHeader: true, Key: key}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// tamper changes a body byte of img; with rehash it also fixes the SHA-256
// TLV, as an attacker who cannot sign would, so that only the signature
// gives the change away.
func tamper(t *testing.T, img []byte, rehash bool) []byte {
	t.Helper()
	b := bytes.Clone(img)
	im, err := mcuboot.Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	b[int(im.Header.HeaderSize)+100] ^= 0xff
	if rehash {
		sum, err := mcuboot.HashRegion(bytes.NewReader(b), im.Header)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := im.Find(mcuboot.TLVSHA256)
		copy(b[h.Offset+4:], sum)
	}
	return b
}

// forceSwap programs img into the secondary slot with a test-swap request,
// bypassing the device library's checks.
func forceSwap(t *testing.T, s flash.Flash, img []byte) {
	t.Helper()
	g := s.Geometry()
	if err := s.Erase(0, g.Size); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteAt(img, 0); err != nil {
		t.Fatal(err)
	}
	off, blk := mcuboot.Layout{SlotSize: g.Size}.MagicBlock()
	if _, err := s.WriteAt(blk, off); err != nil {
		t.Fatal(err)
	}
}

func TestBootloaderChecksSignatures(t *testing.T) {
	trusted, _ := mcuboot.GenerateKey(mcuboot.KeyECDSAP256)
	other, _ := mcuboot.GenerateKey(mcuboot.KeyEd25519)
	factory := signedImage(t, "1.0.0", 9000, trusted)
	good := signedImage(t, "1.0.1", 20000, trusted)
	cases := []struct {
		name string
		img  []byte
		want error // nil: swapped in
	}{
		{"signed by the trusted key", good, nil},
		{"signed by another key", signedImage(t, "1.0.1", 20000, other), mcuboot.ErrKeyNotTrusted},
		{"unsigned", signedImage(t, "1.0.1", 20000, nil), mcuboot.ErrUnsigned},
		{"body changed, hash fixed", tamper(t, good, true), mcuboot.ErrBadSignature},
		{"body changed", tamper(t, good, false), mcuboot.ErrHashMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, s, b := slots(t, factory)
			b.Keys = []*mcuboot.PublicKey{trusted.Public()}
			forceSwap(t, s, c.img)
			res, err := b.Boot()
			if err != nil {
				t.Fatal(err)
			}
			if c.want == nil {
				if res.Swap != mcuboot.SwapTest || res.Refused != nil {
					t.Fatalf("boot: %+v", res)
				}
				if v, _ := running(t, p); v != "1.0.1" {
					t.Fatalf("runs %s", v)
				}
				return
			}
			if res.Swap != mcuboot.SwapNone || !errors.Is(res.Refused, c.want) {
				t.Fatalf("boot: swap %v, refused %v; want %v", res.Swap, res.Refused, c.want)
			}
			if v, _ := running(t, p); v != "1.0.0" {
				t.Fatalf("runs %s", v)
			}
			if !bytes.Equal(s.Bytes(), bytes.Repeat([]byte{flash.ErasedByte}, len(s.Bytes()))) {
				t.Fatal("the refused image was not erased")
			}
		})
	}
	// A bootloader with keys does not boot an unsigned primary image.
	_, _, b := slots(t, signedImage(t, "1.0.0", 9000, nil))
	b.Keys = []*mcuboot.PublicKey{trusted.Public()}
	if _, err := b.Boot(); !errors.Is(err, ErrNoBootableImage) || !errors.Is(err, mcuboot.ErrUnsigned) {
		t.Fatalf("unsigned primary: %v", err)
	}
}

// TestTamperedImageRefusedTwice runs devices that trust one key against the
// local cloud: images that are not validly signed by it are refused by the
// device library (the job FAILED with a reason, the slot reset), and, when
// forced into the secondary slot with a swap request, by the bootloader.
// A validly signed image goes through.
func TestTamperedImageRefusedTwice(t *testing.T) {
	key, err := mcuboot.GenerateKey(mcuboot.KeyECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	c := testCloud(t)
	factory := signedImage(t, "1.0.0", 60_000, key)
	good := signedImage(t, "1.0.1", 120_001, key)
	cases := []struct {
		thing, reason string
		img           []byte
		bootErr       error
	}{
		{"signed-dev", "", good, nil},
		{"resigned-dev", "bad_signature", tamper(t, good, true), mcuboot.ErrBadSignature},
		{"flipped-dev", "hash_mismatch", tamper(t, good, false), mcuboot.ErrHashMismatch},
	}
	devices := map[string]*Device{}
	for _, tc := range cases {
		devices[tc.thing] = deviceFor(t, c, filepath.Join(t.TempDir(), tc.thing), tc.thing, factory, func(cfg *DeviceConfig) {
			cfg.Keys = []*mcuboot.PublicKey{key.Public()}
			cfg.Agent = agent.Config{ProgressPercent: 1000, ProgressInterval: time.Hour}
		})
		publish(t, c, "job-"+tc.thing, tc.thing+".bin", c.Endpoints().HTTP, tc.img, "1.0.1", tc.thing)
	}
	for _, tc := range cases {
		t.Run(tc.thing, func(t *testing.T) {
			d := devices[tc.thing]
			stop, early := runDevice(d)
			execs := untilTerminal(t, c, "job-"+tc.thing, early, tc.thing)
			if err := stop(); err != nil && !errors.Is(err, context.Canceled) {
				t.Fatalf("device: %v", err)
			}
			e := execs[0]
			run, err := d.Running()
			if err != nil {
				t.Fatal(err)
			}
			if tc.reason == "" {
				if e.Status != iotjobs.StatusSucceeded || run.Version != "1.0.1" || !run.Confirmed {
					t.Fatalf("execution %s %v; runs %+v", e.Status, e.StatusDetails, run)
				}
				return
			}
			// Refused once: by the device library, before any reboot.
			if e.Status != iotjobs.StatusFailed || e.StatusDetails["reason"] != tc.reason {
				t.Fatalf("execution %s %v, want FAILED %s", e.Status, e.StatusDetails, tc.reason)
			}
			if d.Reboots() != 0 || run.Version != "1.0.0" {
				t.Fatalf("%d reboots, runs %s", d.Reboots(), run.Version)
			}
			if _, err := mcuboot.Parse(d.secondary, d.cfg.Geometry.Size); !errors.Is(err, mcuboot.ErrNotImage) {
				t.Fatalf("the secondary slot was not reset: %v", err)
			}
			// Refused twice: forced into the slot with a swap request, the
			// bootloader will not swap it in, and erases it.
			forceSwap(t, d.secondary, tc.img)
			res, err := d.Boot()
			if err != nil {
				t.Fatal(err)
			}
			if res.Swap != mcuboot.SwapNone || !errors.Is(res.Refused, tc.bootErr) {
				t.Fatalf("bootloader: swap %v, refused %v; want %v", res.Swap, res.Refused, tc.bootErr)
			}
			if run, _ := d.Running(); run.Version != "1.0.0" || !run.Confirmed {
				t.Fatalf("after the refused swap the device runs %+v", run)
			}
			if _, err := mcuboot.Parse(d.secondary, d.cfg.Geometry.Size); err == nil {
				t.Fatal("the bootloader left the refused image in the secondary slot")
			}
		})
	}
}
