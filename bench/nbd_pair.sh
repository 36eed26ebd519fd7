#!/usr/bin/env bash
# bench/nbd_pair.sh - two NBD servers on the bench file, measured in pairs.
#
# For the effect of one change, on a machine whose speed drifts by 20-30%
# within minutes: both servers run side by side on the same file (held in
# the page cache), and each round runs the same fio nbd job against A and
# then B (the order alternates), so every pair sees the same machine. It
# prints each pair and, at the end, the median of the per-pair ratios B/A:
# throughput, and server CPU seconds per GiB moved.
#
#   A=iocd:/path/to/old/build B=iocd:build bench/nbd_pair.sh
#   A=nbdkit B=iocd:build RW=write BS=128k QD=8 bench/nbd_pair.sh
#
# Environment:
#   A, B        nbdkit | iocd:BUILD_DIR (default A=nbdkit, B=iocd:build)
#   ROUNDS=6    pairs
#   RW=write BS=128k QD=8 JOBS=1 RUNTIME=3   the fio job (JOBS = connections)
#   IOCD_ARGS   extra iocd options, both iocds
#   BENCH_DIR=/var/tmp/ioc-bench   the 1 GiB file (made by bench/nbd.sh if absent)
#   PORT0=10970 first TCP port used
set -euo pipefail
cd "$(dirname "$0")/.."
A=${A:-nbdkit}; B=${B:-iocd:build}
ROUNDS=${ROUNDS:-6}; RW=${RW:-write}; BS=${BS:-128k}; QD=${QD:-8}; JOBS=${JOBS:-1}
RUNTIME=${RUNTIME:-3}; WORK=${BENCH_DIR:-/var/tmp/ioc-bench}; PORT0=${PORT0:-10970}
FILE=$WORK/bench.raw
PY=/usr/bin/python3

scripts/deps.sh bench
mkdir -p "$WORK"
if [ "$(stat -c %s "$FILE" 2>/dev/null || echo 0)" != $((1024 << 20)) ]; then
    dd if=/dev/urandom of="$FILE" bs=1M count=1024 status=none
fi

. bench/pair_lib.sh
pair_keep_resident "$FILE" "$WORK/pair_keep_resident.log" --small-folios

# start SPEC NAME PORT: prints the server's pid (run in $(...): the server's
# stdout must not be that pipe, and it outlives this subshell)
start() {
    local spec=$1 name=$2 port=$3 pid sock
    case $spec in
    nbdkit)
        nbdkit -f -p "$port" -e bench file file="$FILE" >"$WORK/pair_$name.log" 2>&1 &
        pid=$! ;;
    iocd:*)
        local dir=${spec#iocd:}
        sock=$WORK/pair_$name.sock
        # shellcheck disable=SC2086
        "$dir/iocd" --rpc-socket "$sock" --nbd-listen "127.0.0.1:$port" --cores 1 \
            --iscsi-listen none --log-level warn ${IOCD_ARGS:-} >"$WORK/pair_$name.log" 2>&1 &
        pid=$!
        for _ in $(seq 200); do "$dir/iocctl" -s "$sock" methods >/dev/null 2>&1 && break; sleep 0.05; done
        "$dir/iocctl" -s "$sock" bdev create file bench "$FILE" >/dev/null
        "$dir/iocctl" -s "$sock" nbd export add bench bench >/dev/null ;;
    *) echo "nbd_pair: A and B are nbdkit or iocd:BUILD_DIR, not '$spec'" >&2; exit 2 ;;
    esac
    for _ in $(seq 200); do
        nbdinfo --size "nbd://127.0.0.1:$port/bench" >/dev/null 2>&1 && { echo "$pid"; return; }
        sleep 0.05
    done
    echo "nbd_pair: $spec not serving on port $port:" >&2; cat "$WORK/pair_$name.log" >&2
    kill "$pid" 2>/dev/null; exit 1
}

# measure PID PORT: "MiB/s GiB cpu_seconds"
measure() {
    local pid=$1 port=$2 t0 t1 out
    t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    out=$(fio --name=pair --rw="$RW" --bs="$BS" --iodepth="$QD" --numjobs="$JOBS" \
        --group_reporting --time_based --runtime="${RUNTIME}s" --norandommap --randrepeat=0 \
        --size=1073741824 --ioengine=nbd --uri="nbd://127.0.0.1:$port/bench" \
        --output-format=json 2>/dev/null |
        $PY -c 'import json, sys
t = sys.stdin.read(); j = json.loads(t[t.index("{"):])["jobs"][0]
d = j["read"] if j["read"]["total_ios"] else j["write"]
print(d["bw_bytes"] / 2**20, d["io_bytes"] / 2**30)')
    t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    echo "$out $(( (t1 - t0) )) $(getconf CLK_TCK)"
}

pa=$(start "$A" a "$PORT0"); PIDS+=("$pa")
pb=$(start "$B" b $((PORT0 + 1))); PIDS+=("$pb")
echo "nbd_pair: A=$A B=$B, fio nbd $RW bs=$BS QD$QD x$JOBS, ${RUNTIME}s, $ROUNDS pairs"
results=$WORK/pair_results.txt
: >"$results"
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then
        ma=$(measure "$pa" "$PORT0"); mb=$(measure "$pb" $((PORT0 + 1)))
    else
        mb=$(measure "$pb" $((PORT0 + 1))); ma=$(measure "$pa" "$PORT0")
    fi
    echo "$ma $mb" | awk '{ca = $3 / $4 / $2; cb = $7 / $8 / $6
        printf "A %6.0f MiB/s %.3f cpu-s/GiB | B %6.0f MiB/s %.3f cpu-s/GiB | B/A %.3f cpu %.3f\n",
               $1, ca, $5, cb, $5 / $1, cb / ca}' | tee -a "$results"
done
echo "median B/A: throughput $(awk '{print $(NF - 2)}' "$results" | pair_median)," \
     "server CPU per GiB $(awk '{print $NF}' "$results" | pair_median)"
