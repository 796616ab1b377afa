#!/usr/bin/env bash
# powercut-campaign.sh — the random power-cut campaign at benchmark size:
# updates simulated devices from 1.0.0 to 1.0.1 on the in-process local cloud,
# cutting each update's power one to three times at operations drawn
# uniformly from a whole update (download, verification, swap request, the
# bootloader's swap and revert, self-test, confirmation, reports) on flash
# that tears what a cut interrupts, then runs each to the end of its job.
# Prints the Markdown table (docs/benchmarks.md holds a run): cuts, bricks,
# stuck executions, untruthful reports, SUCCEEDED, FAILED by reason, and
# bytes downloaded per image size. Exits non-zero on any brick, stuck
# execution or untruthful report.
#
# Usage: scripts/powercut-campaign.sh [CUTS [SEED]]   (default 1000 cuts, seed 1)
# Needs: go. CI runs the same test with 200 cuts (go test ./sim).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cuts="${1:-1000}"
seed="${2:-1}"
case "$cuts$seed" in
*[!0-9]*) echo "powercut-campaign: CUTS and SEED are whole numbers (got '$cuts' and '$seed')" >&2; exit 2 ;;
esac
command -v go >/dev/null || { echo "powercut-campaign: go is not on PATH" >&2; exit 2; }
table="$(mktemp)"
trap 'rm -f "$table"' EXIT
status=0
(cd "$root" && go test -count=1 -timeout 60m -run '^TestPowerCutCampaign$' ./sim \
	-args -cuts "$cuts" -seed "$seed" -campaign-table "$table") >&2 || status=$?
if [ -s "$table" ]; then
	cat "$table"
else
	echo "powercut-campaign: the campaign wrote no table (see the test output above)" >&2
fi
exit "$status"
