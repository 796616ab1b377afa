#!/usr/bin/env bash
# bench-delta.sh — patch sizes of awsfota's delta format against Debian's
# bsdiff, xdelta3 -9 and zstd -19 --patch-from, side by side in one run, over
# every pair of the given corpora, with create time (ours and bsdiff's),
# apply time and apply peak memory; the geometric mean of ours/bsdiff per
# corpus; then Apply's heap for synthetic images of 1 to 64 MiB. Prints
# Markdown tables (docs/benchmarks.md holds a run).
#
# Usage: scripts/bench-delta.sh [--build] [DIR...]
#   DIR is a folder with pairs.json (the firmware corpus's format, see its
#   README.md; scripts/build-delta-pairs.sh writes one) or the cross corpus
#   (thumb2-/rv32-/aarch64-/x86_64-vX.bin: pairs v2.7.1 → v2.8.0 and v2.9.2 →
#   v2.9.3). The default is ../shared/corpus/firmware and
#   ../shared/corpus/cross beside the repository. --build also builds the
#   pairs of scripts/build-delta-pairs.sh (C libraries for four instruction
#   sets and large Go programs) into a temporary folder and measures them.
# Needs: go, python3, and the Debian packages bsdiff, xdelta3, zstd and time
#   (apt-get install bsdiff xdelta3 zstd time).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build=0
if [ "${1:-}" = "--build" ]; then
	build=1
	shift
fi
dirs=("$@")
if [ ${#dirs[@]} -eq 0 ]; then
	dirs=("$root/../shared/corpus/firmware" "$root/../shared/corpus/cross")
fi
for d in "${dirs[@]}"; do
	if [ ! -f "$d/pairs.json" ] && [ ! -f "$d/thumb2-v2.7.1.bin" ]; then
		echo "bench-delta: no corpus at $d (pairs.json is missing)." >&2
		echo "Pass corpus directories: scripts/bench-delta.sh DIR..." >&2
		exit 2
	fi
done
missing=()
for tool in go python3 bsdiff bspatch xdelta3 zstd; do
	command -v "$tool" >/dev/null || missing+=("$tool")
done
[ -x /usr/bin/time ] || missing+=("/usr/bin/time")
if [ ${#missing[@]} -gt 0 ]; then
	echo "bench-delta: missing ${missing[*]}: apt-get install bsdiff xdelta3 zstd time python3 (and Go)" >&2
	exit 2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$root" && go build -o "$work/awsfota" ./cmd/awsfota)
if [ $build = 1 ]; then
	"$root/scripts/build-delta-pairs.sh" "$work/built" >&2
	dirs+=("$work/built")
fi

python3 - "$work" "${dirs[@]}" <<'PY'
import json, math, os, re, subprocess, sys

work, dirs = sys.argv[1], sys.argv[2:]
awsfota = os.path.join(work, "awsfota")

def load(d):
    if os.path.exists(os.path.join(d, "pairs.json")):
        return json.load(open(os.path.join(d, "pairs.json")))["pairs"]
    pairs = []
    for arch in ("thumb2", "rv32", "aarch64", "x86_64"):
        for a, b in (("v2.7.1", "v2.8.0"), ("v2.9.2", "v2.9.3")):
            pairs.append({"family": "littlefs-" + arch, "old": "%s-%s.bin" % (arch, a), "new": "%s-%s.bin" % (arch, b),
                          "old_version": a, "new_version": b})
    return pairs

def timed(cmd):
    """Runs cmd under /usr/bin/time -v; returns (seconds, peak RSS in MiB, stdout)."""
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("bench-delta: %s failed:\n%s" % (" ".join(cmd), p.stderr))
    m = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", p.stderr)
    secs = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1)) / 1024
    return secs, rss, p.stdout

def same(a, b):
    return open(a, "rb").read() == open(b, "rb").read()

def gmean(v):
    return math.exp(sum(math.log(x) for x in v) / len(v))

names = ("ours", "bsdiff", "xdelta3", "zstd")
print("| pair | arch | new B | ours B | bsdiff B | xdelta3 -9 B | zstd -19 B | ours / bsdiff | create s (bsdiff s) | apply s | apply MiB |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
summary = []
for d in dirs:
    ratios, rel = [], {k: [] for k in names}
    ctimes = []
    for i, p in enumerate(load(d)):
        old, new = os.path.join(d, p["old"]), os.path.join(d, p["new"])
        f = lambda ext: os.path.join(work, "%d.%s" % (i, ext))
        ct, cm, out = timed([awsfota, "delta", "create", old, new, "-o", f("afdp")])
        arch = re.search(r"architecture: (\S+)", out).group(1)
        at, am, _ = timed([awsfota, "delta", "apply", old, f("afdp"), "-o", f("out")])
        if not same(f("out"), new):
            sys.exit("bench-delta: our patch for %s did not rebuild it" % p["new"])
        bt, _, _ = timed(["bsdiff", old, new, f("bsdiff")])
        subprocess.run(["xdelta3", "-9", "-e", "-f", "-s", old, new, f("xd3")], check=True, capture_output=True)
        subprocess.run(["zstd", "-q", "-f", "-19", "--long=27", "--patch-from=" + old, new, "-o", f("zst")], check=True, capture_output=True)
        s = {"ours": os.path.getsize(f("afdp")), "bsdiff": os.path.getsize(f("bsdiff")),
             "xdelta3": os.path.getsize(f("xd3")), "zstd": os.path.getsize(f("zst"))}
        for k in names:
            rel[k].append(s[k] / s["bsdiff"])
        ratios.append(s["ours"] / s["bsdiff"])
        ctimes.append(ct / max(bt, 0.001))
        print("| %s %s → %s | %s | %s | %s | %s | %s | %s | %.2f | %.2f (%.2f) | %.2f | %.0f |" % (
            p["family"], p["old_version"], p["new_version"], arch, "{:,}".format(os.path.getsize(new)),
            "{:,}".format(s["ours"]), "{:,}".format(s["bsdiff"]), "{:,}".format(s["xdelta3"]), "{:,}".format(s["zstd"]),
            s["ours"] / s["bsdiff"], ct, bt, at, am))
        for ext in ("afdp", "out", "bsdiff", "xd3", "zst"):
            os.remove(f(ext))
    summary.append((os.path.basename(os.path.normpath(d)), len(ratios), {k: gmean(rel[k]) for k in names}, max(ratios), gmean(ctimes)))
print()
print("Geometric mean of each tool's patch size relative to bsdiff's, per corpus:")
print()
print("| corpus | pairs | ours | bsdiff | xdelta3 -9 | zstd -19 --patch-from | ours, worst pair | our create time / bsdiff's (geomean) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for name, n, g, worst, ct in summary:
    print("| %s | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.1f× |" % (name, n, g["ours"], g["bsdiff"], g["xdelta3"], g["zstd"], worst, ct))
PY

echo
echo "Apply's heap for synthetic images (go test -bench ApplyLarge ./delta):"
echo
echo '```'
(cd "$root" && go test -run '^$' -bench 'ApplyLarge' -benchmem -benchtime 3x ./delta/ | grep -E '^Benchmark')
echo '```'
