#!/usr/bin/env bash
# Runs the benchmark: agentplane vs direct replica choice, HAProxy and nginx on 127.0.0.1.
# Installs haproxy and nginx from Debian packages if missing, builds agentplane from this
# repository, writes results/results.md, results/results.json and results/latency.png.
# Flags go to the bench command; see `bench/run.sh -h`. Example: bench/run.sh -scenarios a90,kill -duration 30s
set -euo pipefail
cd "$(dirname "$0")"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
exec go run ./cmd/bench -repo .. "$@"
