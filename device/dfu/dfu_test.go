package dfu

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
)

func TestIdentify(t *testing.T) {
	cases := []struct {
		head []byte
		want ImageType
	}{
		{[]byte{0x3d, 0xb8, 0xf3, 0x96, 0, 0, 0, 0}, TypeMCUboot},
		{[]byte{1, 2, 3, 4, 0x6d, 0x65, 0x44, 0x75}, TypeModemDelta},
		{[]byte{0xd2, 0x84, 0, 0, 0, 0, 0, 0}, TypeModemFull},
		{[]byte{0, 0, 0, 0, 0, 0, 0, 0}, TypeUnknown},
		{[]byte{0x3d}, TypeUnknown},
		{nil, TypeUnknown},
	}
	for _, c := range cases {
		if got := Identify(c.head); got != c.want {
			t.Errorf("Identify(% x) = %v, want %v", c.head, got, c.want)
		}
	}
	for _, ty := range []ImageType{TypeMCUboot, TypeModemDelta, TypeModemFull, TypeUnknown} {
		if ty.String() == "" {
			t.Error("empty name")
		}
	}
}

func TestTooLargeError(t *testing.T) {
	var err error = &TooLargeError{Size: 10, Max: 5}
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "at most 5") {
		t.Fatal(err)
	}
}

func TestIdentifyDelta(t *testing.T) {
	if got := Identify([]byte("AFDP\x01\x01\x00\x00")); got != TypeDelta || got.String() != "delta" {
		t.Fatalf("Identify(delta) = %v", got)
	}
}

func TestCheckBase(t *testing.T) {
	img := []byte("the running image, then erased flash")
	sum := sha256.Sum256(img[:17])
	if err := CheckBase(bytes.NewReader(img), 17, sum[:]); err != nil {
		t.Fatal(err)
	}
	err := CheckBase(bytes.NewReader(img), 18, sum[:])
	var bm *BaseMismatchError
	if !errors.Is(err, ErrBaseMismatch) || !errors.As(err, &bm) || !strings.Contains(err.Error(), "full image") {
		t.Fatalf("mismatch: %v", err)
	}
	if err := CheckBase(bytes.NewReader(img), 1000, sum[:]); !errors.Is(err, ErrBaseMismatch) || !strings.Contains(err.Error(), "first 36 bytes") {
		t.Fatalf("a base longer than the slot: %v", err)
	}
}
