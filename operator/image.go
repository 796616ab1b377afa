package operator

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/awsfota/awsfota/delta"
	"github.com/awsfota/awsfota/device/dfu"
	"github.com/awsfota/awsfota/device/dfu/modem"
	"github.com/awsfota/awsfota/jobdoc"
	"github.com/awsfota/awsfota/mcuboot"
	"github.com/awsfota/awsfota/raucb"
)

// ImageInfo is what an operator needs to know of an image before publishing
// it, as `awsfota image info` and the console's Publish page show it.
type ImageInfo struct {
	Kind      string // the image type (dfu.Type's name)
	Version   string // the version a device runs afterwards, when the image says
	Component string // "app" or "modem"
	Size      int64
	SHA256    []byte // of the whole file
	// KeyHash is the SHA-256 of the public key the image names (its KEYHASH
	// TLV, or the hash of its PUBKEY TLV), and Signature the signature TLV's
	// name ("ECDSASIG", "ED25519", ...); both empty for an unsigned image.
	KeyHash   []byte
	Signature string
	Base      *jobdoc.Base // a delta's base
	// Compatible is the system a RAUC bundle is for.
	Compatible string
	// First are the file's first bytes, to show what an unknown file is.
	First []byte
}

// InspectImage reads an image file and says what it is. An MCUboot image
// must parse and its SHA-256 TLV must match its contents (a device would
// refuse it otherwise), a delta's header and a RAUC bundle's manifest must
// read; the error says what is wrong. A file of no kind awsfota knows is
// of Kind "file" (dfu.TypeFile): only a device with an exec target, whose
// own install command takes it, installs it, and then only with the
// version the operator gives.
func InspectImage(path string) (*ImageInfo, error) { return inspectImage(path, nil) }

// inspectImage is InspectImage, telling progress (if not nil) how far it
// has read the file.
func inspectImage(path string, progress func(read, total int64)) (*ImageInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	var r io.Reader = f
	if progress != nil {
		r = &countingReader{r: f, total: st.Size(), progress: progress}
	}
	if _, err := io.Copy(h, r); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	in := &ImageInfo{Size: st.Size(), SHA256: h.Sum(nil)}
	if in.Size == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	head := make([]byte, min(in.Size, 4+0xffff))
	if _, err := f.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	in.First = bytes.Clone(head[:min(len(head), 8)])
	kind := dfu.Identify(head)
	if raucb.IsBundle(head) {
		kind = dfu.TypeRAUC
	}
	switch kind {
	case dfu.TypeRAUC:
		b, err := raucb.Open(f, in.Size)
		if err != nil {
			return nil, fmt.Errorf("%s starts like a RAUC bundle but is not a valid one: %w", path, err)
		}
		in.Compatible, in.Version, in.Component = b.Manifest.Compatible, b.Manifest.Version, jobdoc.ComponentRAUC
	case dfu.TypeMCUboot:
		im, _, err := mcuboot.VerifyHash(f, in.Size)
		if err != nil {
			return nil, fmt.Errorf("%s starts like an MCUboot image but is not a valid one: %w", path, err)
		}
		in.Version = im.Header.Version.String()
		for _, t := range append(append([]mcuboot.TLV{}, im.Protected...), im.Unprotected...) {
			switch t.Type {
			case mcuboot.TLVKeyHash:
				in.KeyHash = t.Value
			case mcuboot.TLVPubKey:
				sum := sha256.Sum256(t.Value)
				in.KeyHash = sum[:]
			case mcuboot.TLVRSA2048PSS, mcuboot.TLVECDSA224, mcuboot.TLVECDSASig, mcuboot.TLVRSA3072PSS, mcuboot.TLVED25519:
				in.Signature = mcuboot.TLVName(t.Type)
			}
		}
	case dfu.TypeDelta:
		hd, err := delta.ParseHeader(head)
		if err != nil {
			return nil, fmt.Errorf("%s starts like an awsfota delta but is not a valid one: %w", path, err)
		}
		in.Base = &jobdoc.Base{SHA256: hd.BaseSHA256[:], Size: hd.BaseSize}
	case dfu.TypeModemFull:
		v, err := modem.ParseFullImage(head)
		if err != nil {
			return nil, err
		}
		in.Version = v
		in.Component = jobdoc.ComponentModem
	case dfu.TypeModemDelta:
		in.Component = jobdoc.ComponentModem
	default:
		kind = dfu.TypeFile
	}
	in.Kind = kind.String()
	if in.Component == "" {
		in.Component = jobdoc.ComponentApp
	}
	return in, nil
}
