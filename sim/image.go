package sim

import (
	"bytes"
	"fmt"
	"math/rand/v2"

	"github.com/awsfota/awsfota/mcuboot"
)

// AppImage builds an unsigned MCUboot application image of about size bytes
// whose body is pseudo-random, seeded by the version so that every version
// has different contents.
func AppImage(version string, size int) ([]byte, error) { return SignedAppImage(version, size, nil) }

// SignedAppImage is AppImage signed with key (unsigned when key is nil).
func SignedAppImage(version string, size int, key *mcuboot.PrivateKey) ([]byte, error) {
	v, err := mcuboot.ParseVersion(version)
	if err != nil {
		return nil, err
	}
	if size < 1 {
		return nil, fmt.Errorf("sim: image size %d", size)
	}
	return AppImageFromBody(version, appBody(v, size), key)
}

// AppBody is the body SignedAppImage puts in an image of version (size
// pseudo-random bytes, the same for the same version and size).
func AppBody(version string, size int) ([]byte, error) {
	v, err := mcuboot.ParseVersion(version)
	if err != nil {
		return nil, err
	}
	return appBody(v, size), nil
}

func appBody(v mcuboot.Version, size int) []byte {
	body := make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(v.Major)<<40|uint64(v.Minor)<<32|uint64(v.Revision)<<16, uint64(v.Build)))
	for i := range body {
		body[i] = byte(r.Uint32())
	}
	return body
}

// AppImageFromBody builds an MCUboot application image of version around
// body, signed with key (unsigned when key is nil).
func AppImageFromBody(version string, body []byte, key *mcuboot.PrivateKey) ([]byte, error) {
	v, err := mcuboot.ParseVersion(version)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if _, err := mcuboot.Create(&out, bytes.NewReader(body), int64(len(body)), mcuboot.CreateOptions{Version: v, PadHeader: true, Key: key}); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
