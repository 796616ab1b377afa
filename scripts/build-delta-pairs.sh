#!/usr/bin/env bash
# build-delta-pairs.sh — builds old → new image pairs for the delta
# benchmark (scripts/bench-delta.sh) from open source at two versions:
#
#   - two C libraries, zlib 1.3.1 → 1.3.2 and lz4 1.9.3 → 1.9.4, linked as
#     bare-metal images (-Os, function sections, as ../shared/corpus/cross
#     does for littlefs) for Thumb-2 (Cortex-M33), RV32IMC (picolibc),
#     AArch64 and x86-64;
#   - a large Go program, goimports from golang.org/x/tools v0.28.0 →
#     v0.29.0, cross-compiled for linux/arm64, amd64 and riscv64 and
#     stripped as a device's image would be (-ldflags='-s -w': without it
#     the linker adds 1.5 MB of zlib-compressed DWARF that no differ can
#     shrink), ELF files of 4.7–5.2 MB.
#
# The sources are Go modules (the C libraries' repositories are served by
# the Go module proxy as modules), fetched with `go mod download`.
#
# Usage: scripts/build-delta-pairs.sh OUT_DIR
#   Writes the images and OUT_DIR/pairs.json (the format of the firmware
#   corpus's pairs.json: family, old, new, old_version, new_version).
# Needs: go, and the Debian packages gcc-arm-none-eabi, gcc-riscv64-unknown-elf,
#   picolibc-riscv64-unknown-elf, gcc-aarch64-linux-gnu, gcc, binutils.
set -euo pipefail
out="${1:?usage: build-delta-pairs.sh OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
missing=()
for tool in go gcc objcopy arm-none-eabi-gcc riscv64-unknown-elf-gcc aarch64-linux-gnu-gcc; do
	command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "build-delta-pairs: missing ${missing[*]}: apt-get install gcc-arm-none-eabi gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf gcc-aarch64-linux-gnu gcc" >&2
	exit 2
fi

moddir() { go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'; }

# cbuild OUT.bin ARCH SRCDIR FILES...: the files compiled and linked as a
# bare-metal image for ARCH, as ../shared/corpus/cross/build-lfs.sh does.
cbuild() {
	local bin=$1 arch=$2 src=$3
	shift 3
	local pfx flags ldflags=""
	case $arch in
	thumb2) pfx=arm-none-eabi- flags="-mcpu=cortex-m33 -mthumb" ;;
	rv32)
		pfx=riscv64-unknown-elf- flags="-march=rv32imc -mabi=ilp32 --specs=picolibc.specs"
		ldflags="-Wl,--defsym=__flash_size=0x400000 -Wl,--defsym=__ram_size=0x100000"
		;;
	aarch64) pfx=aarch64-linux-gnu- flags="" ;;
	x86_64) pfx="" flags="" ;;
	esac
	local obj
	obj=$(mktemp -d)
	for f in "$@"; do
		# shellcheck disable=SC2086
		"${pfx}gcc" $flags -Os -ffunction-sections -fdata-sections -I"$src" -I"$src/lib" -c "$src/$f" -o "$obj/$(basename "$f" .c).o"
	done
	# shellcheck disable=SC2086
	"${pfx}gcc" $flags $ldflags -nostdlib -nostartfiles -static -Wl,-e,0 -Wl,--no-gc-sections -Wl,--unresolved-symbols=ignore-all "$obj"/*.o -o "$obj/fw.elf"
	"${pfx}objcopy" -O binary "$obj/fw.elf" "$bin"
	rm -rf "$obj"
}

zlib_files="adler32.c compress.c crc32.c deflate.c infback.c inffast.c inflate.c inftrees.c trees.c uncompr.c zutil.c"
lz4_files="lib/lz4.c lib/lz4hc.c lib/lz4frame.c lib/xxhash.c"
entries=()
for lib in zlib:github.com/madler/zlib:v1.3.1:v1.3.2 lz4:github.com/lz4/lz4:v1.9.3:v1.9.4; do
	IFS=: read -r name mod v1 v2 <<<"$lib"
	files=$zlib_files
	[ "$name" = lz4 ] && files=$lz4_files
	d1=$(moddir "$mod@$v1")
	d2=$(moddir "$mod@$v2")
	for arch in thumb2 rv32 aarch64 x86_64; do
		# shellcheck disable=SC2086
		cbuild "$out/$name-$arch-$v1.bin" "$arch" "$d1" $files
		# shellcheck disable=SC2086
		cbuild "$out/$name-$arch-$v2.bin" "$arch" "$d2" $files
		entries+=("$name-$arch $name-$arch-$v1.bin $name-$arch-$v2.bin $v1 $v2")
	done
done

# goimports at two versions of golang.org/x/tools, in a throwaway module.
gomod=$(mktemp -d)
trap 'rm -rf "$gomod"' EXIT
for v in v0.28.0 v0.29.0; do
	(
		cd "$gomod"
		rm -f go.mod go.sum
		go mod init example.com/pairs >/dev/null 2>&1
		go get "golang.org/x/tools@$v" >/dev/null 2>&1
		for arch in arm64 amd64 riscv64; do
			GOOS=linux GOARCH=$arch CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags='-s -w' -o "$out/goimports-$arch-$v" golang.org/x/tools/cmd/goimports
		done
	)
done
for arch in arm64 amd64 riscv64; do
	entries+=("goimports-$arch goimports-$arch-v0.28.0 goimports-$arch-v0.29.0 v0.28.0 v0.29.0")
done

{
	echo '{"description": "pairs built by scripts/build-delta-pairs.sh", "pairs": ['
	sep=""
	for e in "${entries[@]}"; do
		read -r fam old new v1 v2 <<<"$e"
		printf '%s {"family": "%s", "old": "%s", "new": "%s", "old_version": "%s", "new_version": "%s", "new_size": %d}\n' \
			"$sep" "$fam" "$old" "$new" "$v1" "$v2" "$(stat -c %s "$out/$new")"
		sep=","
	done
	echo ']}'
} >"$out/pairs.json"
echo "build-delta-pairs: ${#entries[@]} pairs in $out (pairs.json)"
