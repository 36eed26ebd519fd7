#!/usr/bin/env bash
# bench/replication.sh - a 3-replica nexus against a 1-replica nexus (4k
# randwrite and randread, QD32) and a full rebuild against nbdcopy, in one
# run, medians of REPEATS rounds; see bench/replication_bench.py.
# Exit 0 when every ratio meets its goal (0.5, 0.9, 0.8).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh bench
make --no-print-directory build >/dev/null
exec /usr/bin/python3 bench/replication_bench.py "$@"
