#!/usr/bin/env bash
# bench-delta.sh — patch sizes of awsfota's delta format against Debian's
# bsdiff, xdelta3 -9 and zstd -19 --patch-from over every pair of the firmware
# corpus, with our create and apply time and peak memory; then Apply's heap
# for synthetic images of 1 to 64 MiB. Prints Markdown tables
# (docs/benchmarks.md holds a run).
#
# Usage: scripts/bench-delta.sh [CORPUS_DIR]
#   CORPUS_DIR defaults to ../shared/corpus/firmware relative to the repository
#   root and must hold pairs.json (see that folder's README.md).
# Needs: go, python3, and the Debian packages bsdiff, xdelta3, zstd and time
#   (apt-get install bsdiff xdelta3 zstd time).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
corpus="${1:-$root/../shared/corpus/firmware}"
if [ ! -f "$corpus/pairs.json" ]; then
	echo "bench-delta: no firmware corpus at $corpus (pairs.json is missing)." >&2
	echo "Pass the corpus directory: scripts/bench-delta.sh DIR" >&2
	exit 2
fi
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

python3 - "$corpus" "$work" <<'PY'
import json, os, re, statistics, subprocess, sys

corpus, work = sys.argv[1], sys.argv[2]
awsfota = os.path.join(work, "awsfota")
pairs = json.load(open(os.path.join(corpus, "pairs.json")))["pairs"]

def timed(cmd):
    """Runs cmd under /usr/bin/time -v; returns (seconds, peak RSS in MiB)."""
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("bench-delta: %s failed:\n%s" % (" ".join(cmd), p.stderr))
    m = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", p.stderr)
    secs = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1)) / 1024
    return secs, rss

def same(a, b):
    return open(a, "rb").read() == open(b, "rb").read()

rows, sizes = [], {k: [] for k in ("ours", "bsdiff", "xdelta3", "zstd")}
rss_apply, rss_create = [], []
for i, p in enumerate(pairs):
    old, new = os.path.join(corpus, p["old"]), os.path.join(corpus, p["new"])
    f = lambda ext: os.path.join(work, "%d.%s" % (i, ext))
    ct, cm = timed([awsfota, "delta", "create", old, new, "-o", f("afdp")])
    at, am = timed([awsfota, "delta", "apply", old, f("afdp"), "-o", f("out")])
    if not same(f("out"), new):
        sys.exit("bench-delta: our patch for %s did not rebuild it" % p["new"])
    subprocess.run(["bsdiff", old, new, f("bsdiff")], check=True, capture_output=True)
    subprocess.run(["xdelta3", "-9", "-e", "-f", "-s", old, new, f("xd3")], check=True, capture_output=True)
    subprocess.run(["zstd", "-q", "-f", "-19", "--long=27", "--patch-from=" + old, new, "-o", f("zst")], check=True, capture_output=True)
    s = {"ours": os.path.getsize(f("afdp")), "bsdiff": os.path.getsize(f("bsdiff")),
         "xdelta3": os.path.getsize(f("xd3")), "zstd": os.path.getsize(f("zst"))}
    for k, v in s.items():
        sizes[k].append(v)
    rss_apply.append(am)
    rss_create.append(cm)
    rows.append([p["family"], "%s → %s" % (p["old_version"], p["new_version"]), "{:,}".format(p["new_size"]),
                 "{:,}".format(s["ours"]), "{:,}".format(s["bsdiff"]), "{:,}".format(s["xdelta3"]),
                 "{:,}".format(s["zstd"]), "%.1f%%" % (100 * s["ours"] / s["bsdiff"]),
                 "%.2f" % ct, "%.0f" % cm, "%.2f" % at, "%.0f" % am])
    for ext in ("afdp", "out", "bsdiff", "xd3", "zst"):
        os.remove(f(ext))

print("| family | old → new | new B | ours B | bsdiff B | xdelta3 -9 B | zstd -19 B | ours / bsdiff | create s | create MiB | apply s | apply MiB |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print("| " + " | ".join(r) + " |")
print()
print("| | ours | bsdiff | xdelta3 -9 | zstd -19 --patch-from |")
print("|---|---:|---:|---:|---:|")
names = ("ours", "bsdiff", "xdelta3", "zstd")
print("| median B | " + " | ".join("{:,.0f}".format(statistics.median(sizes[k])) for k in names) + " |")
print("| total B | " + " | ".join("{:,}".format(sum(sizes[k])) for k in names) + " |")
best = [min(names, key=lambda k: sizes[k][i]) for i in range(len(pairs))]
print("| smallest in | " + " | ".join("%d of %d" % (best.count(k), len(pairs)) for k in names) + " |")
print()
print("Peak RSS of the awsfota process (Go runtime included): apply %.0f–%.0f MiB, create %.0f–%.0f MiB,"
      % (min(rss_apply), max(rss_apply), min(rss_create), max(rss_create)))
print("for new images of %s to %s bytes." % ("{:,}".format(min(p["new_size"] for p in pairs)),
                                               "{:,}".format(max(p["new_size"] for p in pairs))))
PY

echo
echo "Apply's heap for synthetic images (go test -bench ApplyLarge ./delta):"
echo
echo '```'
(cd "$root" && go test -run '^$' -bench 'ApplyLarge' -benchmem -benchtime 3x ./delta/ | grep -E '^Benchmark')
echo '```'
