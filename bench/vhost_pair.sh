#!/usr/bin/env bash
# bench/vhost_pair.sh - two iocd vhost-user-blk exports, measured in pairs.
#
# The vhost-user counterpart of bench/nbd_pair.sh: two iocds side by side,
# each exporting the same buffered file (held in the page cache), and
# vblk-perf run against A and then B in every round (the order alternates),
# so each pair sees the same machine. Prints each pair and the median of the
# per-pair IOPS ratios B/A.
#
#   A=/tmp/old/build B=build bench/vhost_pair.sh
#   A=build B=build A_BDEV='"map": false' bench/vhost_pair.sh   # mapping off vs on
#
# Environment:
#   A, B          iocd build directories (default: build for both)
#   A_BDEV, B_BDEV  extra bdev_file_create parameters, JSON members
#   ROUNDS=8 RUNTIME=2 QD=32 MODE=adaptive RW=randread BS=4k   the vblk-perf job
#   BENCH_DIR=/var/tmp/ioc-vhost-bench   the 1 GiB file (made by bench/vhost.sh if absent)
set -euo pipefail
cd "$(dirname "$0")/.."
A=${A:-build}; B=${B:-build}
ROUNDS=${ROUNDS:-8}; RUNTIME=${RUNTIME:-2}; QD=${QD:-32}; MODE=${MODE:-adaptive}
RW=${RW:-randread}; BS=${BS:-4k}; WORK=${BENCH_DIR:-/var/tmp/ioc-vhost-bench}
FILE=$WORK/bench.raw
PY=/usr/bin/python3

mkdir -p "$WORK"
if [ "$(stat -c %s "$FILE" 2>/dev/null || echo 0)" != $((1024 << 20)) ]; then
    head -c $((1024 << 20)) /dev/urandom >"$FILE"
fi
. bench/pair_lib.sh
pair_keep_resident "$FILE" "$WORK/pair_keep_resident.log"

# start BUILD_DIR NAME EXTRA_BDEV_JSON: prints the iocd's pid (see nbd_pair.sh on $(...))
start() {
    local dir=$1 name=$2 extra=$3 sock=$WORK/pair_$2.sock pid
    rm -f "$sock" "$WORK/pair_$name.vhost"
    "$dir/iocd" --rpc-socket "$sock" --nbd-listen none --iscsi-listen none --cores 1 \
        --log-level warn >"$WORK/pair_$name.log" 2>&1 &
    pid=$!
    for _ in $(seq 200); do "$dir/iocctl" -s "$sock" methods >/dev/null 2>&1 && break; sleep 0.05; done
    "$dir/iocctl" -s "$sock" call bdev_file_create \
        "{\"name\": \"r\", \"path\": \"$FILE\", \"block_size\": 4096${extra:+, $extra}}" >/dev/null
    "$dir/iocctl" -s "$sock" call vhost_blk_export_add \
        "{\"socket\": \"$WORK/pair_$name.vhost\", \"bdev\": \"r\"}" >/dev/null
    echo "$pid"
}

pa=$(start "$A" a "${A_BDEV:-}"); PIDS+=("$pa")
pb=$(start "$B" b "${B_BDEV:-}"); PIDS+=("$pb")
PERF=$B/vblk-perf
measure() {
    "$PERF" --socket "$WORK/pair_$1.vhost" --mode "$MODE" --rw "$RW" --bs "$BS" --qd "$QD" \
        --runtime "$RUNTIME" --json | $PY -c 'import json, sys; print(json.load(sys.stdin)["iops"])'
}
echo "vhost_pair: A=$A ${A_BDEV:-} B=$B ${B_BDEV:-}, vblk-perf $MODE $RW bs=$BS QD$QD, ${RUNTIME}s, $ROUNDS pairs"
results=$WORK/pair_results.txt
: >"$results"
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then ia=$(measure a); ib=$(measure b); else ib=$(measure b); ia=$(measure a); fi
    echo "$ia $ib" | awk '{printf "A %8.0f IOPS | B %8.0f IOPS | B/A %.3f\n", $1, $2, $2 / $1}' |
        tee -a "$results"
done
echo "median B/A: $(awk '{print $NF}' "$results" | pair_median)"
