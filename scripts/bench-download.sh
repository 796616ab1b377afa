#!/usr/bin/env bash
# bench-download: the device's downloader against curl, and the device
# agent's memory as images grow.
#
#  1. Serves one object (SIZE_MB, default 64 MiB) from the local cloud's object
#     store and times `awsfota fetch` and `curl` on its presigned URL, RUNS
#     times each (default 5), printing the medians and their ratio (target:
#     fetch / curl <= 1.1).
#  2. Runs a simulated device (`awsfota device run --sim`) through a whole
#     update with a 16 MiB and then a 256 MiB image under /usr/bin/time and
#     prints its peak RSS for each (target: flat as the image grows).
#
# Needs: Go, curl, the AWS CLI (awscli, for the upload and the presign),
# GNU time (/usr/bin/time), python3. Usage: scripts/bench-download.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="/usr/local/go/bin:$PATH"
size_mb=${SIZE_MB:-64}
runs=${RUNS:-5}
aws=/usr/bin/aws
[ -x "$aws" ] || aws=$(command -v aws) || { echo "bench-download: needs the AWS CLI (apt-get install awscli)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench-download: needs GNU time (apt-get install time)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

bin="$work/awsfota"
(cd "$root" && go build -o "$bin" ./cmd/awsfota)
"$bin" cloud serve --data "$work/cloud" --mqtt-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 >"$work/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -f "$work/cloud/endpoints.json" ] && break; sleep 0.1; done
ep() { python3 -c "import json,sys; print(json.load(open('$work/cloud/endpoints.json'))['$1'])"; }
http=$(ep http)
export AWS_ACCESS_KEY_ID=$(ep accessKeyId) AWS_SECRET_ACCESS_KEY=$(ep secretAccessKey) AWS_DEFAULT_REGION=$(ep region)
printf "[default]\n" >"$work/aws-config"
export AWS_CONFIG_FILE="$work/aws-config" AWS_SHARED_CREDENTIALS_FILE="$work/aws-none" AWS_EC2_METADATA_DISABLED=true
unset AWS_CA_BUNDLE AWS_PROFILE || true

# --- 1. fetch against curl ---------------------------------------------------
head -c $((size_mb << 20)) /dev/urandom >"$work/object.bin"
"$aws" --endpoint-url "$http" s3 mb s3://bench >/dev/null
"$aws" --endpoint-url "$http" s3 cp --no-progress "$work/object.bin" s3://bench/object.bin >/dev/null
url=$("$aws" --endpoint-url "$http" s3 presign s3://bench/object.bin --expires-in 3600)

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
timeit() { # prints seconds
	local s e
	s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N)
	echo "scale=4; ($e - $s) / 1000000000" | bc
}
fetch_times=() nosync_times=() curl_times=()
for _ in $(seq "$runs"); do
	rm -f "$work"/f.bin* "$work/c.bin"
	fetch_times+=("$(timeit "$bin" fetch "$url" -o "$work/f.bin" -q)")
	rm -f "$work"/f.bin*
	nosync_times+=("$(timeit "$bin" fetch "$url" -o "$work/f.bin" -q --no-sync)")
	curl_times+=("$(timeit curl -sS -o "$work/c.bin" "$url")")
done
cmp -s "$work/f.bin" "$work/object.bin" || { echo "bench-download: awsfota fetch got different bytes" >&2; exit 1; }
cmp -s "$work/c.bin" "$work/object.bin" || { echo "bench-download: curl got different bytes" >&2; exit 1; }
f=$(printf '%s\n' "${fetch_times[@]}" | median)
n=$(printf '%s\n' "${nosync_times[@]}" | median)
c=$(printf '%s\n' "${curl_times[@]}" | median)
rate() { echo "$size_mb * 1.048576 / $1" | bc -l; }
printf '\n%d MiB from the local object store over loopback, median of %d runs\n' "$size_mb" "$runs"
printf '  curl                     %6.3f s  (%5.0f MB/s)\n' "$c" "$(rate "$c")"
printf '  awsfota fetch --no-sync  %6.3f s  (%5.0f MB/s)  ratio to curl %.2f  (target <= 1.1; neither fsyncs)\n' "$n" "$(rate "$n")" "$(echo "$n / $c" | bc -l)"
printf '  awsfota fetch            %6.3f s  (%5.0f MB/s)  ratio to curl %.2f  (fsyncs the file: durable)\n' "$f" "$(rate "$f")" "$(echo "$f / $c" | bc -l)"

# --- 2. the agent's peak RSS as images grow ------------------------------------
printf '\nsimulated device, whole update, peak RSS of the device process\n'
for mb in 16 256; do
	th="rss-$mb"
	"$bin" thing create "$th" --out "$work/$th" --local "$work/cloud" >/dev/null
	python3 - "$work/$th/device.json" "$mb" <<'PY'
import json, sys
p, mb = sys.argv[1], int(sys.argv[2])
d = json.load(open(p))
d["slots"] = {"size": (mb + 2) << 20, "sectorSize": 4096, "writeAlign": 4}
json.dump(d, open(p, "w"), indent=2)
PY
	/usr/bin/time -f "%M" -o "$work/$th.rss" "$bin" device run --config "$work/$th/device.json" --state "$work/$th/state" --sim >"$work/$th.log" 2>&1 &
	dev=$!
	pids+=($dev)
	for _ in $(seq 100); do grep -q "booted 1.0.0" "$work/$th.log" && break; sleep 0.1; done
	python3 - "$work/img-$mb.bin" "$mb" <<'PY'
import os, sys
path, mb = sys.argv[1], int(sys.argv[2])
with open(path, "wb") as f:
    for _ in range(mb):
        f.write(os.urandom(1 << 20))
PY
	"$bin" image create --version 2.0.0 --pad-header "$work/img-$mb.bin" "$work/app-$mb.bin" >/dev/null
	job=$("$bin" job create --local "$work/cloud" --image "$work/app-$mb.bin" --thing "$th" --job-id "rss-$mb" 2>/dev/null)
	"$bin" job watch "$job" --local "$work/cloud" --interval 500ms --timeout 20m >/dev/null
	# Let the device report, then stop it so that time(1) prints its peak.
	for _ in $(seq 100); do grep -q "reported SUCCEEDED" "$work/$th.log" && break; sleep 0.1; done
	pkill -INT -P "$dev" 2>/dev/null || true # time(1) ignores SIGINT: stop its child
	wait "$dev" 2>/dev/null || true
	printf '  %4d MiB image  peak RSS %6d KiB\n' "$mb" "$(tail -1 "$work/$th.rss")"
done
