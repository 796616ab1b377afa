package cli

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/awsfota/awsfota/mcuboot"
	"github.com/spf13/cobra"
)

func imageCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Make signing keys, and create, sign, verify and inspect MCUboot images",
		Long: `image makes MCUboot application images as MCUboot's imgtool does (same options,
same bytes), checks them as MCUboot's bootloader does and shows what they
hold. Key types: ecdsa-p256, ed25519, rsa-2048, rsa-3072. See docs/images.md.`,
	}
	cmd.AddCommand(imageKeygenCmd(e), imageCreateCmd(e), imageVerifyCmd(e), imageInfoCmd(e))
	return cmd
}

// number is a flag holding an integer written in decimal or, as imgtool
// accepts, with a 0x prefix. It implements pflag.Value.
type number struct {
	v   *int64
	set bool
}

func (n *number) String() string {
	if n.v == nil || (!n.set && *n.v == 0) {
		return ""
	}
	return fmt.Sprintf("%#x", *n.v)
}

func (n *number) Set(s string) error {
	v, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, 64)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a number (decimal, or hexadecimal with 0x)", s)
	}
	*n.v, n.set = v, true
	return nil
}

func (n *number) Type() string { return "N" }

// publicKeyPath is where keygen writes the public half of KEY.pem: KEY.pub.pem.
func publicKeyPath(priv string) string {
	return strings.TrimSuffix(priv, ".pem") + ".pub.pem"
}

func imageKeygenCmd(e *env) *cobra.Command {
	var typ, out string
	cmd := &cobra.Command{
		Use:   "keygen --type TYPE -o KEY.pem",
		Short: "Make a signing key (and its public half, KEY.pub.pem)",
		Long: `keygen makes a private signing key and writes it to KEY.pem as unencrypted
PKCS#8, as imgtool keygen does (readable by its owner only), and the public
half to KEY.pub.pem (SubjectPublicKeyInfo, as imgtool getpub -e pem): give that
one to 'image verify' and to devices. It prints the key hash, the value of
the KEYHASH TLV in the images the key signs (imgtool getpubhash).

TYPE is ecdsa-p256, ed25519, rsa-2048 or rsa-3072. Existing files are never
overwritten.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("image keygen needs -o KEY.pem")
			}
			t, err := mcuboot.ParseKeyType(typ)
			if err != nil {
				return usagef("--type %q: use ecdsa-p256, ed25519, rsa-2048 or rsa-3072", typ)
			}
			return runImageKeygen(e, t, out)
		},
	}
	cmd.Flags().StringVarP(&typ, "type", "t", "ecdsa-p256", "key `TYPE`: ecdsa-p256, ed25519, rsa-2048 or rsa-3072")
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the private key to `KEY.pem` and the public key to KEY.pub.pem")
	return cmd
}

func runImageKeygen(e *env, t mcuboot.KeyType, out string) error {
	pubPath := publicKeyPath(out)
	for _, p := range []string{out, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("image keygen: %s exists: remove it or choose another -o; a signing key is never overwritten", p)
		}
	}
	k, err := mcuboot.GenerateKey(t)
	if err != nil {
		return err
	}
	privPEM, err := k.MarshalPEM()
	if err != nil {
		return err
	}
	pubPEM, err := k.Public().MarshalPEM()
	if err != nil {
		return err
	}
	if err := writeFileAtomic(out, 0o600, func(w io.Writer) error { _, err := w.Write(privPEM); return err }); err != nil {
		return fmt.Errorf("image keygen: %w", err)
	}
	if err := writeFileAtomic(pubPath, 0o644, func(w io.Writer) error { _, err := w.Write(pubPEM); return err }); err != nil {
		return fmt.Errorf("image keygen: %w", err)
	}
	fmt.Fprintf(e.out, "wrote %s (private %v key, keep it secret) and %s (public key, for image verify and devices)\nkey hash %x\n",
		out, t, pubPath, k.Public().Hash())
	return nil
}

// createFlags are image create's options, named as imgtool sign's.
type createFlags struct {
	key, version, keyFormat, counter, dependencies string
	customTLVs                                     []string
	headerSize, slotSize, loadAddr, romFixed       int64
	align, maxAlign, maxSectors                    int64
	padHeader, pad, test, confirm, nonBootable     bool
	loadAddrSet, romFixedSet                       *number
}

func imageCreateCmd(e *env) *cobra.Command {
	f := createFlags{headerSize: mcuboot.DefaultHeaderSize}
	f.loadAddrSet, f.romFixedSet = &number{v: &f.loadAddr}, &number{v: &f.romFixed}
	cmd := &cobra.Command{
		Use:   "create --version V [--key KEY.pem] [options] IN.bin OUT.bin",
		Short: "Make an MCUboot image from a firmware binary, signed when given a key",
		Long: `create makes an MCUboot image from IN.bin as imgtool sign does, with the same
options and the same output byte for byte (Ed25519 and unsigned images are
identical to imgtool's; ECDSA and RSA signatures are randomised, everything
else is identical).

The header takes --header-size bytes (default 0x200) in front of the body.
As with imgtool, IN.bin must begin with that many zero bytes reserved for it
(a firmware linked to start after the header), unless --pad-header is given:
then the header is added in front of IN.bin and its padding filled with 0xff.

With --key the image is signed: a KEYHASH (or, with --public-key-format full,
a PUBKEY) TLV names the key, and the signature follows. Without --key the
image carries its SHA-256 only. --security-counter puts a SEC_CNT TLV in the
protected area (auto: (major<<24)|(minor<<16)|revision of --version), which
devices use to refuse rollbacks.

--slot-size checks that the image and MCUboot's trailer fit the slot; --pad
fills the file up to the slot with 0xff and the trailer magic (a test swap
once programmed into the secondary slot), --confirm also sets image_ok (a
permanent swap). OUT.bin is written only when everything succeeded.`,
		Args: exactArgs(2, "IN.bin and OUT.bin"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.options()
			if err != nil {
				return err
			}
			return runImageCreate(e, args[0], args[1], o)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.key, "key", "k", "", "sign with the private key in `KEY.pem` (PKCS#8, SEC1 or PKCS#1 PEM); unsigned without")
	fl.StringVar(&f.version, "version", "", "image `VERSION`: major.minor.revision+build, later parts optional (required)")
	fl.VarP(&number{v: &f.headerSize}, "header-size", "H", "header size in bytes")
	fl.BoolVar(&f.padHeader, "pad-header", false, "add the header in front of IN.bin (else IN.bin must start with header-size zero bytes)")
	fl.VarP(&number{v: &f.slotSize}, "slot-size", "S", "size of the slot the image is for: image and trailer must fit")
	fl.BoolVar(&f.pad, "pad", false, "pad to --slot-size with the trailer magic: a test swap in the secondary slot")
	fl.BoolVar(&f.test, "test", false, "same as --pad")
	fl.BoolVar(&f.confirm, "confirm", false, "as --pad, and set image_ok: a permanent swap")
	fl.Var(&number{v: &f.align}, "align", "flash write alignment: 1, 2, 4, 8, 16 or 32 (default 1)")
	fl.Var(&number{v: &f.maxAlign}, "max-align", "the bootloader's BOOT_MAX_ALIGN: 8, 16 or 32 (default the larger of 8 and --align)")
	fl.Var(&number{v: &f.maxSectors}, "max-sectors", "the bootloader's BOOT_MAX_IMG_SECTORS, for the trailer size (default 128)")
	fl.StringVarP(&f.counter, "security-counter", "s", "", "add a SEC_CNT TLV: a number, or auto (from --version)")
	fl.StringVar(&f.keyFormat, "public-key-format", "hash", "how the image names its key: hash (KEYHASH) or full (PUBKEY)")
	fl.StringVarP(&f.dependencies, "dependencies", "d", "", `DEPENDENCY TLVs, as imgtool: "(IMAGE_ID,VERSION)[,(IMAGE_ID,VERSION)...]"`)
	fl.StringArrayVar(&f.customTLVs, "custom-tlv", nil, "add a protected vendor TLV `TAG=VALUE` (TAG 0xa0-0xfffe; VALUE 0x-prefixed hex, or text); repeatable")
	fl.Var(f.loadAddrSet, "load-addr", "RAM load address (sets the RAM_LOAD flag)")
	fl.Var(f.romFixedSet, "rom-fixed", "fixed ROM address of the image (sets the ROM_FIXED flag)")
	fl.BoolVar(&f.nonBootable, "non-bootable", false, "set the NON_BOOTABLE flag")
	return cmd
}

var dependencyRE = regexp.MustCompile(`^\(\s*(\d+)\s*,\s*([^)\s]+)\s*\)$`)

// options turns the flags into CreateOptions, refusing what imgtool refuses.
func (f *createFlags) options() (mcuboot.CreateOptions, error) {
	var o mcuboot.CreateOptions
	if f.version == "" {
		return o, usagef("image create needs --version (for example --version 1.2.3+4)")
	}
	v, err := mcuboot.ParseVersion(f.version)
	if err != nil {
		return o, usagef("--version: %v", err)
	}
	o.Version = v
	if f.headerSize > 0xffff {
		return o, usagef("--header-size %#x: at most 0xffff", f.headerSize)
	}
	o.HeaderSize, o.PadHeader, o.SlotSize = int(f.headerSize), f.padHeader, f.slotSize
	o.Pad, o.Confirm = f.pad || f.test, f.confirm
	if (o.Pad || o.Confirm) && o.SlotSize == 0 {
		return o, usagef("--pad, --test and --confirm need --slot-size")
	}
	o.Align, o.MaxAlign, o.MaxSectors = int(f.align), int(f.maxAlign), int(f.maxSectors)
	if o.PublicKeyFormat, err = mcuboot.ParseKeyFormat(f.keyFormat); err != nil {
		return o, usagef("--public-key-format %q: use hash or full", f.keyFormat)
	}
	switch f.counter {
	case "":
	case "auto":
		n := v.SecurityCounter()
		o.SecurityCounter = &n
	default:
		n, err := strconv.ParseUint(f.counter, 0, 32)
		if err != nil {
			return o, usagef("--security-counter %q: use a number up to 0xffffffff, or auto", f.counter)
		}
		n32 := uint32(n)
		o.SecurityCounter = &n32
	}
	if f.dependencies != "" {
		// "(1,2.3.4+5),(0,1.0.0)": split between ")" and "(".
		for _, d := range strings.SplitAfter(f.dependencies, ")") {
			d = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(d), ","))
			if d == "" {
				continue
			}
			m := dependencyRE.FindStringSubmatch(d)
			if m == nil {
				return o, usagef("--dependencies %q: use (IMAGE_ID,VERSION), comma-separated", f.dependencies)
			}
			id, err := strconv.ParseUint(m[1], 10, 8)
			if err != nil {
				return o, usagef("--dependencies: image id %s does not fit in 8 bits", m[1])
			}
			dv, err := mcuboot.ParseVersion(m[2])
			if err != nil {
				return o, usagef("--dependencies: %v", err)
			}
			o.Dependencies = append(o.Dependencies, mcuboot.Dependency{ImageID: uint8(id), MinVersion: dv})
		}
	}
	seen := map[uint64]bool{}
	for _, c := range f.customTLVs {
		tagS, val, ok := strings.Cut(c, "=")
		tag, err := strconv.ParseUint(tagS, 0, 16)
		if !ok || err != nil || tag < 0xa0 || tag > 0xfffe {
			return o, usagef("--custom-tlv %q: use TAG=VALUE with TAG from 0xa0 to 0xfffe", c)
		}
		if seen[tag] {
			return o, usagef("--custom-tlv: TAG %#x given twice", tag)
		}
		seen[tag] = true
		b := []byte(val)
		if h, isHex := strings.CutPrefix(val, "0x"); isHex {
			if b, err = hex.DecodeString(h); err != nil {
				return o, usagef("--custom-tlv %q: the value after 0x must be an even number of hex digits", c)
			}
		}
		o.ProtectedTLVs = append(o.ProtectedTLVs, mcuboot.TLV{Type: uint16(tag), Value: b})
	}
	if f.loadAddrSet.set && f.romFixedSet.set {
		return o, usagef("--load-addr and --rom-fixed cannot be used together")
	}
	switch {
	case f.loadAddrSet.set:
		o.LoadAddr, o.Flags = uint32(f.loadAddr), mcuboot.FlagRAMLoad
	case f.romFixedSet.set:
		o.LoadAddr, o.Flags = uint32(f.romFixed), mcuboot.FlagROMFixed
	}
	if f.loadAddr > 0xffffffff || f.romFixed > 0xffffffff {
		return o, usagef("--load-addr and --rom-fixed take 32-bit addresses")
	}
	if f.nonBootable {
		o.Flags |= mcuboot.FlagNonBootable
	}
	if f.key != "" {
		b, err := os.ReadFile(f.key)
		if err != nil {
			return o, fmt.Errorf("image create: reading the key: %w", err)
		}
		if o.Key, err = mcuboot.ParsePrivateKeyPEM(b); err != nil {
			return o, fmt.Errorf("image create: %s: %w", f.key, err)
		}
	}
	return o, nil
}

func runImageCreate(e *env, in, out string, o mcuboot.CreateOptions) error {
	src, size, err := openRegular(in)
	if err != nil {
		return err
	}
	defer src.Close()
	var im *mcuboot.Image
	bar := e.progress("making "+filepath.Base(out), size)
	err = writeFileAtomic(out, 0o644, func(w io.Writer) error {
		im, err = mcuboot.Create(w, bar.Reader(src), size, o)
		return err
	})
	bar.Done()
	if errors.Is(err, mcuboot.ErrHeaderNotZero) {
		return fmt.Errorf("image create %s: %w; add --pad-header to put the header in front of it (for firmware linked to run after the header)", in, err)
	}
	if err != nil {
		return fmt.Errorf("image create %s: %w", in, err)
	}
	h, _ := im.Find(mcuboot.TLVSHA256)
	signed := "unsigned (SHA-256 only)"
	if o.Key != nil {
		signed = fmt.Sprintf("signed with %v key %x (%s)", o.Key.Public().Type(), o.Key.Public().Hash(), map[bool]string{true: "PUBKEY", false: "KEYHASH"}[o.PublicKeyFormat == mcuboot.FullKey])
	}
	fmt.Fprintf(e.out, "wrote %s: MCUboot image %s, %d bytes", out, im.Header.Version, im.Size)
	if o.Pad || o.Confirm {
		swap := "test swap"
		if o.Confirm {
			swap = "permanent swap"
		}
		fmt.Fprintf(e.out, " padded to the %d-byte slot (%s)", o.SlotSize, swap)
	}
	fmt.Fprintf(e.out, "\n%s; SHA-256 %x", signed, h.Value)
	if n, ok := im.SecurityCounter(); ok {
		fmt.Fprintf(e.out, "; security counter %d", n)
	}
	fmt.Fprintln(e.out)
	return nil
}

// loadPublicKeys reads the trusted keys from PEM files (public keys, or the
// public half of private ones).
func loadPublicKeys(paths []string) ([]*mcuboot.PublicKey, error) {
	var keys []*mcuboot.PublicKey
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		k, err := mcuboot.ParsePublicKeyPEM(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// verifyResult is `image verify --json`'s output.
type verifyResult struct {
	File     string  `json:"file"`
	Valid    bool    `json:"valid"`
	Error    string  `json:"error,omitempty"`
	Reason   string  `json:"reason,omitempty"` // hash_mismatch, bad_signature, unsigned, invalid_image
	Version  string  `json:"version,omitempty"`
	SHA256   string  `json:"sha256,omitempty"`
	Signed   bool    `json:"signatureChecked"`
	KeyType  string  `json:"keyType,omitempty"`
	KeyHash  string  `json:"keyHash,omitempty"`
	Security *uint32 `json:"securityCounter,omitempty"`
}

func imageVerifyCmd(e *env) *cobra.Command {
	var (
		keys   []string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "verify [--key PUB.pem]... FILE",
		Short: "Check an image as MCUboot does: hash and, with --key, signature",
		Long: `verify checks FILE as MCUboot's bootloader checks an image before booting it:
the header and TLV areas, the SHA-256 over header, body and protected TLVs,
and, given trusted keys, the signature. As in MCUboot, a signature counts
only when the KEYHASH (or PUBKEY) TLV before it names a trusted key, so an
image whose key TLV was altered is refused even if imgtool verify accepts it.
--key may repeat: any of the keys may have signed the image. Keys are PEM
files, public (KEY.pub.pem) or private.

Without --key only the hash is checked, as by an MCUboot built without
signatures. It exits 0 only when the image is valid.`,
		Args: exactArgs(1, "one FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			trusted, err := loadPublicKeys(keys)
			if err != nil {
				return fmt.Errorf("image verify: %w", err)
			}
			return runImageVerify(e, args[0], trusted, asJSON)
		},
	}
	cmd.Flags().StringArrayVarP(&keys, "key", "k", nil, "trust the public key in `PUB.pem` (repeatable)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func runImageVerify(e *env, path string, keys []*mcuboot.PublicKey, asJSON bool) error {
	f, size, err := openRegular(path)
	if err != nil {
		return err
	}
	defer f.Close()
	res := verifyResult{File: path, Signed: len(keys) > 0}
	bar := e.progress("verifying "+filepath.Base(path), size)
	v, verr := mcuboot.Verify(bar.ReaderAt(f), size, keys)
	bar.Done()
	if verr == nil {
		res.Valid, res.Version, res.SHA256 = true, v.Image.Header.Version.String(), hex.EncodeToString(v.Hash)
		if v.Key != nil {
			res.KeyType, res.KeyHash = v.Key.Type().String(), hex.EncodeToString(v.Key.Hash())
		}
		if n, ok := v.Image.SecurityCounter(); ok {
			res.Security = &n
		}
	} else {
		res.Error, res.Reason = verr.Error(), verifyReason(verr)
	}
	if asJSON {
		enc := json.NewEncoder(e.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
		if verr != nil {
			return errSilent
		}
		return nil
	}
	if verr != nil {
		fmt.Fprintf(e.errOut, "awsfota: %s is NOT valid: %v\n%s\n", path, verr, verifyAdvice(verr))
		return errSilent
	}
	fmt.Fprintf(e.out, "%s: valid MCUboot image %s, SHA-256 %s", path, res.Version, res.SHA256)
	if res.Security != nil {
		fmt.Fprintf(e.out, ", security counter %d", *res.Security)
	}
	if v.Key != nil {
		fmt.Fprintf(e.out, "\nsigned with the trusted %s key %s\n", res.KeyType, res.KeyHash)
	} else {
		fmt.Fprintf(e.out, "\nsignature not checked: give --key PUB.pem to check it\n")
	}
	return nil
}

// verifyReason names a verification failure as the device's job failure
// reasons do.
func verifyReason(err error) string {
	switch {
	case errors.Is(err, mcuboot.ErrHashMismatch):
		return "hash_mismatch"
	case errors.Is(err, mcuboot.ErrUnsigned):
		return "unsigned"
	case errors.Is(err, mcuboot.ErrBadSignature):
		return "bad_signature"
	}
	return "invalid_image"
}

func verifyAdvice(err error) string {
	switch {
	case errors.Is(err, mcuboot.ErrHashMismatch):
		return "The image was changed or damaged after it was made: make it again, or download it again."
	case errors.Is(err, mcuboot.ErrUnsigned):
		return "Sign it: awsfota image create --key KEY.pem ..."
	case errors.Is(err, mcuboot.ErrKeyNotTrusted):
		return "It was signed with another key (see the key hash): check --key, or sign it with the devices' key."
	case errors.Is(err, mcuboot.ErrBadSignature):
		return "The signature does not match the image: it was altered after signing; sign it again."
	case errors.Is(err, mcuboot.ErrNotImage):
		return "This is not an MCUboot image: make one with awsfota image create."
	}
	return "The file is not a complete, well-formed MCUboot image: make it again, or download it again."
}

// imageInfo is `image info --json`'s output.
type imageInfo struct {
	File            string       `json:"file"`
	FileSize        int64        `json:"fileSize"`
	Header          headerInfo   `json:"header"`
	ImageSize       int64        `json:"imageSize"`
	HashedSize      int64        `json:"hashedSize"`
	SHA256          string       `json:"sha256"` // computed over the hashed region
	HashValid       bool         `json:"hashValid"`
	SecurityCounter *uint32      `json:"securityCounter,omitempty"`
	Dependencies    []dependency `json:"dependencies,omitempty"`
	Protected       []tlvInfo    `json:"protectedTLVs"`
	TLVs            []tlvInfo    `json:"tlvs"`
	Trailer         *trailerInfo `json:"trailer,omitempty"`
}

type headerInfo struct {
	Magic          string   `json:"magic"`
	LoadAddr       string   `json:"loadAddr"`
	HeaderSize     int      `json:"headerSize"`
	ProtectTLVSize int      `json:"protectTLVSize"`
	ImageSize      uint32   `json:"imageSize"`
	Flags          string   `json:"flags"`
	FlagNames      []string `json:"flagNames"`
	Version        string   `json:"version"`
}

type tlvInfo struct {
	Type   string `json:"type"`
	Name   string `json:"name"`
	Len    int    `json:"len"`
	Offset int64  `json:"offset"` // of the value, from the start of the file
	Value  string `json:"value"`  // hex
}

type dependency struct {
	ImageID    uint8  `json:"imageId"`
	MinVersion string `json:"minVersion"`
}

type trailerInfo struct {
	SlotSize int64  `json:"slotSize"`
	MaxAlign int    `json:"maxAlign"`
	Magic    string `json:"magic"`
	ImageOK  string `json:"imageOk"`
	CopyDone string `json:"copyDone"`
	SwapInfo string `json:"swapInfo"`
	SwapSize string `json:"swapSize"`
	// Swap is what MCUboot does with this slot as the secondary one.
	Swap string `json:"swapAsSecondary"`
}

func imageInfoCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info FILE",
		Short: "Show an image's header, TLVs and trailer",
		Long: `info shows what an MCUboot image holds: the header, every protected and
unprotected TLV with its offset and value, whether the SHA-256 matches, and,
for a file padded to a slot, the trailer (magic, image_ok, copy_done,
swap_info, swap_size) and the swap MCUboot would make of it as the
secondary slot. It checks no signature: see image verify.`,
		Args: exactArgs(1, "one FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runImageInfo(e, args[0], asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func tlvInfos(tlvs []mcuboot.TLV) []tlvInfo {
	out := []tlvInfo{}
	for _, t := range tlvs {
		out = append(out, tlvInfo{Type: fmt.Sprintf("%#02x", t.Type), Name: mcuboot.TLVName(t.Type), Len: len(t.Value),
			Offset: t.Offset + 4, Value: hex.EncodeToString(t.Value)})
	}
	return out
}

func runImageInfo(e *env, path string, asJSON bool) error {
	f, size, err := openRegular(path)
	if err != nil {
		return err
	}
	defer f.Close()
	im, err := mcuboot.Parse(f, size)
	if err != nil {
		return fmt.Errorf("image info %s: %w", path, err)
	}
	bar := e.progress("hashing "+filepath.Base(path), im.Header.HashedLen())
	sum, err := mcuboot.HashRegion(bar.ReaderAt(f), im.Header)
	bar.Done()
	if err != nil {
		return fmt.Errorf("image info %s: %w", path, err)
	}
	h := im.Header
	info := imageInfo{File: path, FileSize: size, ImageSize: im.Size, HashedSize: h.HashedLen(), SHA256: hex.EncodeToString(sum),
		Header: headerInfo{Magic: fmt.Sprintf("%#08x", mcuboot.ImageMagic), LoadAddr: fmt.Sprintf("%#08x", h.LoadAddr),
			HeaderSize: int(h.HeaderSize), ProtectTLVSize: int(h.ProtectTLVSize), ImageSize: h.ImageSize,
			Flags: fmt.Sprintf("%#08x", h.Flags), FlagNames: mcuboot.FlagNames(h.Flags), Version: h.Version.String()},
		Protected: tlvInfos(im.Protected), TLVs: tlvInfos(im.Unprotected)}
	if t, ok := im.Find(mcuboot.TLVSHA256); ok {
		info.HashValid = hex.EncodeToString(t.Value) == info.SHA256
	}
	if n, ok := im.SecurityCounter(); ok {
		info.SecurityCounter = &n
	}
	if deps, err := im.Dependencies(); err == nil {
		for _, d := range deps {
			info.Dependencies = append(info.Dependencies, dependency{d.ImageID, d.MinVersion.String()})
		}
	}
	if size > im.Size {
		l, _ := mcuboot.DetectLayout(f, size)
		if st, err := mcuboot.ReadTrailer(f, l); err == nil && l.SwapSizeOffset() >= im.Size {
			info.Trailer = &trailerInfo{SlotSize: size, MaxAlign: l.MaxAlign, Magic: st.Magic.String(), ImageOK: st.ImageOK.String(),
				CopyDone: st.CopyDone.String(), SwapInfo: fmt.Sprintf("%#02x", st.SwapInfo), SwapSize: fmt.Sprintf("%#08x", st.SwapSize),
				Swap: mcuboot.DecideSwap(mcuboot.TrailerState{}, st).String()}
		}
	}
	if asJSON {
		enc := json.NewEncoder(e.out)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	hash := "matches the SHA256 TLV"
	if !info.HashValid {
		hash = "DOES NOT match the SHA256 TLV"
	}
	flags := strings.Join(info.Header.FlagNames, ", ")
	if flags == "" {
		flags = "none"
	}
	rows := [][]string{
		{"file", fmt.Sprintf("%s, %d bytes", path, size)},
		{"version", info.Header.Version},
		{"header", fmt.Sprintf("%d bytes, load address %s, flags %s (%s)", h.HeaderSize, info.Header.LoadAddr, info.Header.Flags, flags)},
		{"body", fmt.Sprintf("%d bytes at %d", h.ImageSize, h.HeaderSize)},
		{"image", fmt.Sprintf("%d bytes; protected TLV area %d bytes", im.Size, h.ProtectTLVSize)},
		{"SHA-256", fmt.Sprintf("%s over %d bytes, %s", info.SHA256, info.HashedSize, hash)},
	}
	if info.SecurityCounter != nil {
		rows = append(rows, []string{"security counter", fmt.Sprint(*info.SecurityCounter)})
	}
	for _, d := range info.Dependencies {
		rows = append(rows, []string{"dependency", fmt.Sprintf("image %d at %s or newer", d.ImageID, d.MinVersion)})
	}
	if tr := info.Trailer; tr != nil {
		rows = append(rows, []string{"trailer", fmt.Sprintf("slot %d bytes, max align %d: magic %s, image_ok %s, copy_done %s, swap_info %s, swap_size %s; as the secondary slot: %s swap",
			tr.SlotSize, tr.MaxAlign, tr.Magic, tr.ImageOK, tr.CopyDone, tr.SwapInfo, tr.SwapSize, tr.Swap)})
	}
	printTable(e.out, rows)
	tlvRows := [][]string{{"AREA", "TYPE", "NAME", "LEN", "OFFSET", "VALUE"}}
	for _, a := range []struct {
		name string
		tlvs []tlvInfo
	}{{"protected", info.Protected}, {"unprotected", info.TLVs}} {
		for _, t := range a.tlvs {
			v := t.Value
			if len(v) > 64 {
				v = v[:64] + "…"
			}
			tlvRows = append(tlvRows, []string{a.name, t.Type, t.Name, fmt.Sprint(t.Len), fmt.Sprint(t.Offset), v})
		}
	}
	fmt.Fprintln(e.out)
	printTable(e.out, tlvRows)
	return nil
}
