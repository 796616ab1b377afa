package cli

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/awsfota/awsfota/delta"
	"github.com/spf13/cobra"
)

func deltaCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delta",
		Short: "Make, apply and inspect delta patches between firmware images",
		Long: `delta makes patches that turn the image a device runs (the base) into a new
one, so that only the patch goes over the air. Applying one needs the base,
the patch read once and under 1 MiB of memory, whatever the image size.
Patches predict the calls, branches and pointers of moved code (--arch).
The format is described in docs/delta.md.`,
	}
	cmd.AddCommand(deltaCreateCmd(e), deltaApplyCmd(e), deltaInfoCmd(e))
	return cmd
}

// deltaArgs refuses any other number of positional arguments with a usage error.
func deltaArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %s, got %d arguments", cmd.CommandPath(), what, len(args))
		}
		return nil
	}
}

func deltaCreateCmd(e *env) *cobra.Command {
	var out, arch string
	cmd := &cobra.Command{
		Use:   "create OLD NEW -o PATCH",
		Short: "Make a patch from image OLD to image NEW",
		Long: `create makes PATCH, which turns OLD (the image the device runs) into NEW.
It prints the sizes and the patch's share of NEW. Making a patch holds both
images in memory (about 10 bytes per byte of OLD).

--arch names the instruction set whose branches, calls and pointers the
patch predicts when code moves: thumb2 (Cortex-M), arm, aarch64, rv32,
rv64, x86-64 or none. The default, auto, reads an ELF file's machine or
else picks from instruction statistics, and says which it picked.`,
		Args: deltaArgs(2, "OLD and NEW"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("delta create needs -o PATCH")
			}
			if _, _, err := delta.ParseTransform(arch); err != nil {
				return usagef("%s", err.Error())
			}
			return runDeltaCreate(e, args[0], args[1], out, arch)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the patch to `PATCH`")
	cmd.Flags().StringVar(&arch, "arch", "auto", "instruction set of the images: auto, "+strings.Join(delta.TransformNames(), ", "))
	return cmd
}

func runDeltaCreate(e *env, oldPath, newPath, out, arch string) error {
	old, oldSize, err := openRegular(oldPath)
	if err != nil {
		return err
	}
	defer old.Close()
	next, _, err := openRegular(newPath)
	if err != nil {
		return err
	}
	defer next.Close()
	var info delta.Info
	bar := e.progress("diffing "+filepath.Base(newPath), -1)
	err = writeFileAtomic(out, 0o644, func(w io.Writer) error {
		info, err = delta.CreateWith(w, old, oldSize, next, delta.Options{Arch: arch,
			Progress: func(done, total int64) { bar.SetTotal(total); bar.Set(done) }})
		return err
	})
	bar.Done()
	if err != nil {
		return fmt.Errorf("delta create: %w", err)
	}
	how := "--arch " + arch
	if info.Detected != "" && info.Detected != "chosen" {
		how = "auto: " + info.Detected
	}
	fmt.Fprintf(e.out, "architecture: %s (%s)\n", info.Transform, how)
	printTable(e.out, [][]string{
		{"", "FILE", "BYTES", "SHA-256"},
		{"base", oldPath, fmt.Sprint(info.BaseSize), hex.EncodeToString(info.BaseSHA256[:])},
		{"result", newPath, fmt.Sprint(info.ResultSize), hex.EncodeToString(info.ResultSHA256[:])},
		{"patch", out, fmt.Sprint(info.PatchSize()), ""},
	})
	fmt.Fprintf(e.out, "patch is %s of the new image; %d %s: %d bytes copied from the base (%d changed), %d inserted\n",
		deltaPercent(info.PatchSize(), info.ResultSize), info.Records, plural(int(info.Records), "record"), info.Copied, info.Changed, info.Inserted)
	return nil
}

func deltaApplyCmd(e *env) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "apply OLD PATCH -o NEW",
		Short: "Rebuild image NEW from OLD and PATCH, verifying both",
		Long: `apply checks that OLD is the image PATCH was made from (size and SHA-256),
rebuilds the new image and checks its SHA-256 against the patch's header.
NEW is written only when everything matches; a patch for another base
fails with "base image mismatch" (the job failure reason base_mismatch).`,
		Args: deltaArgs(2, "OLD and PATCH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("delta apply needs -o NEW")
			}
			return runDeltaApply(e, args[0], args[1], out)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the new image to `NEW`")
	return cmd
}

func runDeltaApply(e *env, oldPath, patchPath, out string) error {
	old, _, err := openRegular(oldPath)
	if err != nil {
		return err
	}
	defer old.Close()
	patch, err := os.Open(patchPath)
	if err != nil {
		return err
	}
	defer patch.Close()
	var info delta.Info
	err = writeFileAtomic(out, 0o644, func(w io.Writer) error {
		info, err = delta.Apply(old, patch, w)
		return err
	})
	if err != nil {
		return fmt.Errorf("delta apply %s: %w", patchPath, err)
	}
	fmt.Fprintf(e.out, "wrote %s: %d bytes, SHA-256 %s verified (base %s verified)\n",
		out, info.ResultSize, hex.EncodeToString(info.ResultSHA256[:]), oldPath)
	return nil
}

// deltaInfo is `delta info --json`'s output.
type deltaInfo struct {
	File         string `json:"file"`
	Version      int    `json:"version"`
	Coding       string `json:"coding"`
	Transform    string `json:"transform"`
	ImageBase    string `json:"imageBase,omitempty"`
	BaseSize     int64  `json:"baseSize"`
	BaseSHA256   string `json:"baseSHA256"`
	ResultSize   int64  `json:"resultSize"`
	ResultSHA256 string `json:"resultSHA256"`
	BodySize     int64  `json:"bodySize"`
	PatchSize    int64  `json:"patchSize"`
}

func deltaInfoCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info PATCH",
		Short: "Show a patch's header: base and result sizes and hashes",
		Args:  deltaArgs(1, "one PATCH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDeltaInfo(e, args[0], asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func runDeltaInfo(e *env, path string, asJSON bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h, err := delta.ReadHeader(f)
	if err != nil {
		return fmt.Errorf("delta info %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != h.PatchSize() {
		return fmt.Errorf("delta info %s: %w: the file has %d bytes, the header says %d: the patch was cut or has bytes appended",
			path, delta.ErrCorrupt, st.Size(), h.PatchSize())
	}
	d := deltaInfo{File: path, Version: int(h.Version), Coding: h.Coding.String(), Transform: h.Transform.String(),
		BaseSize: h.BaseSize, BaseSHA256: hex.EncodeToString(h.BaseSHA256[:]),
		ResultSize: h.ResultSize, ResultSHA256: hex.EncodeToString(h.ResultSHA256[:]),
		BodySize: h.BodySize, PatchSize: h.PatchSize()}
	if h.TransformFlags&delta.FlagPointers != 0 || h.Transform == delta.TransformAArch64 {
		d.ImageBase = fmt.Sprintf("%#x", h.ImageBase)
	}
	if asJSON {
		enc := json.NewEncoder(e.out)
		enc.SetIndent("", "  ")
		return enc.Encode(d)
	}
	printTable(e.out, [][]string{
		{"patch", d.File},
		{"format", fmt.Sprintf("version %d, coding %s, transform %s", d.Version, d.Coding, d.Transform)},
		{"base", fmt.Sprintf("%d bytes, SHA-256 %s", d.BaseSize, d.BaseSHA256)},
		{"result", fmt.Sprintf("%d bytes, SHA-256 %s", d.ResultSize, d.ResultSHA256)},
		{"size", fmt.Sprintf("%d bytes (%s of the result)", d.PatchSize, deltaPercent(d.PatchSize, d.ResultSize))},
	})
	return nil
}

func deltaPercent(part, whole int64) string {
	if whole == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(part)/float64(whole))
}
