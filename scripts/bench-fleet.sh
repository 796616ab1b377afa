#!/usr/bin/env bash
# bench-fleet: whole updates of a simulated fleet against the local cloud,
# cloud and fleet in two processes on this machine.
#
# For each size in SIZES (default "1000 5000 10000"): starts
# `awsfota cloud serve` on a data directory kept across the sizes (so that
# the things are provisioned once, by the largest size first), runs
# `awsfota sim fleet --devices N --job` with a 256 KiB image (IMAGE_SIZE)
# in its own thing group, stops the cloud (so that its peak RSS is this
# size's), and prints one Markdown row: time to connect, time until every
# device SUCCEEDED after the job was created, p50/p90/p99, updates per
# minute, the cloud's peak RSS and its RSS per connected idle device, the
# fleet process's CPU and peak RSS, and the machine's load average before
# the run (other work on the machine slows every number).
#
# Needs: Go, GNU time (/usr/bin/time). Usage:
#   scripts/bench-fleet.sh                 # 1000, 5000, 10000 devices
#   SIZES="200 1000" scripts/bench-fleet.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="/usr/local/go/bin:$PATH"
sizes=${SIZES:-"1000 5000 10000"}
image_size=${IMAGE_SIZE:-262144}
[ -x /usr/bin/time ] || { echo "bench-fleet: needs GNU time (apt-get install time)" >&2; exit 1; }

# Each device holds an MQTT and, while downloading, an HTTP connection in
# both processes: 10 000 devices need over 20 000 files in each. Raise the
# limit as far as this user may (root: beyond the hard limit).
ulimit -n 262144 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
cloud_pid=""
cleanup() { [ -n "$cloud_pid" ] && kill "$cloud_pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

bin="$work/awsfota"
(cd "$root" && go build -o "$bin" ./cmd/awsfota)

start_cloud() {
	rm -f "$work/cloud/endpoints.json"
	"$bin" cloud serve --data "$work/cloud" --mqtt-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 >>"$work/serve.log" 2>&1 &
	cloud_pid=$!
	for _ in $(seq 300); do [ -f "$work/cloud/endpoints.json" ] && return; sleep 0.1; done
	echo "bench-fleet: the cloud did not start; see $work/serve.log" >&2
	exit 1
}
stop_cloud() {
	kill -INT "$cloud_pid"
	wait "$cloud_pid" || true
	cloud_pid=""
}
row() { sed -n "s/^$1  *//p" "$2" | head -1; }

# The largest size first: it provisions every thing the others reuse.
sizes=$(printf '%s\n' $sizes | sort -rn | tr '\n' ' ')
echo "| devices | connect s | all SUCCEEDED s | p50 / p90 / p99 s | updates/min | cloud peak RSS | cloud RSS per idle device | fleet CPU s | fleet peak RSS | load before |"
echo "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"
for n in $sizes; do
	start_cloud
	load=$(cut -d' ' -f1-3 /proc/loadavg)
	out="$work/fleet-$n.txt"
	/usr/bin/time -f "fleet-cpu %U %S %M" -o "$work/time-$n.txt" \
		"$bin" sim fleet --local "$work/cloud" --devices "$n" --group "bench-$n" --job --image-size "$image_size" --timeout "${TIMEOUT:-20m}" \
		>"$out" 2>"$work/fleet-$n.log" || echo "bench-fleet: sim fleet --devices $n failed; see $work/fleet-$n.log" >&2
	stop_cloud
	read -r _ u s m < <(grep '^fleet-cpu ' "$work/time-$n.txt")
	conn=$(row "connected in" "$out" | cut -d' ' -f1)
	all=$(row "all SUCCEEDED after" "$out" | cut -d' ' -f1)
	pct=$(row "time to SUCCEEDED" "$out" | sed 's/p50 \([0-9.]*\) s  p90 \([0-9.]*\) s  p99 \([0-9.]*\) s/\1 \/ \2 \/ \3/')
	upm=$(row "updates per minute" "$out")
	peak=$(row "cloud peak RSS" "$out" | cut -d' ' -f1-2)
	idle=$(row "cloud RSS connected" "$out" | sed 's/.*MiB, \([0-9.]* KiB\) per device.*/\1/')
	echo "| $n | $conn | $all | $pct | $upm | $peak | $idle | $(awk "BEGIN{print $u + $s}") | $((m / 1024)) MiB | $load |"
done
echo
echo "tables of each run: $work/fleet-*.txt; logs: $work/*.log"
