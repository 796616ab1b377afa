#!/usr/bin/env bash
# Regenerates the console's screenshots in docs/images/ (fleet, job in light
# and dark mode, publish, device, jobs) from a rollout on the local cloud
# with simulated devices, driven in headless Chromium by the browser tests.
# Needs Debian's chromium (apt-get install -y chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
out="$PWD/docs/images"
mkdir -p "$out"
go test -tags browser -count=1 -run '^TestConsoleBrowserRollout$' ./internal/cli -screenshots "$out"
ls -l "$out"
