#!/usr/bin/env bash
# bench/iscsi.sh - iocd's iSCSI target against tgt on the same file, same run.
#
#   bench/iscsi.sh [BUILD_DIR]      env: SIZE (1GiB) BENCH_SECONDS (8) REPEATS (3) IOCD_CORES (1)
#
# Workloads, 4k random at queue depth 32, one session each:
#   read   iscsi-perf -m 32 -b 8 -r   (libiscsi), run for SECONDS, its final
#          "iops average"
#   write  qemu-img bench -w -d 32 -s 4k -c COUNT -S 4190208 (qemu's iscsi
#          driver; the 4 MiB - 4 KiB stride walks the file in a scattered order),
#          COUNT / elapsed seconds
# For each repeat, each workload runs once against every server (round robin);
# the table shows medians, the server CPU used (utime+stime of its PID from
# /proc, in cores = CPU seconds / wall seconds) and the iocd/tgt ratio.
# Both servers use the page cache on one file of random data, read once first.
# Every process started here is stopped by PID on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
SIZE=${SIZE:-1GiB}
SECONDS_PER=${BENCH_SECONDS:-8}
REPEATS=${REPEATS:-3}
IOCD_CORES=${IOCD_CORES:-1}
WCOUNT=${WCOUNT:-150000}

for tool in iscsi-perf:libiscsi-bin qemu-img:qemu-utils tgtd:tgt tgtadm:tgt; do
    if ! command -v "${tool%%:*}" >/dev/null; then
        echo "${tool%%:*} not found: install the Debian package '${tool#*:}' (scripts/deps.sh bench)" >&2
        exit 2
    fi
done
if [ ! -e /usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so ]; then
    echo "qemu's iscsi driver missing: install the Debian package 'qemu-block-extra'" >&2
    exit 2
fi

WORK=$(mktemp -d /var/tmp/ioc-bench-iscsi.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}

FILE=$WORK/disk.img
bytes=$(/usr/bin/python3 -c "
import re,sys; m=re.fullmatch(r'(\d+)([KMG]i?B)?', '$SIZE'); n=int(m.group(1))
print(n * {None:1,'KiB':1<<10,'MiB':1<<20,'GiB':1<<30}[m.group(2)])")
echo "bench: writing $SIZE of random data to $FILE"
head -c "$bytes" /dev/urandom >"$FILE"
cat "$FILE" >/dev/null

# ---- iocd
IPORT=$(free_port)
"$BUILD/iocd" --cores "$IOCD_CORES" --rpc-socket "$WORK/iocd.sock" --nbd-listen none \
    --iscsi-listen "127.0.0.1:$IPORT" --log-level warn >"$WORK/iocd.log" 2>&1 &
PIDS+=($!)
IOCD_PID=$!
for _ in $(seq 100); do [ -S "$WORK/iocd.sock" ] && break; sleep 0.05; done
IOCCTL="$BUILD/iocctl -s $WORK/iocd.sock"
$IOCCTL bdev create file bench "$FILE" >/dev/null
$IOCCTL iscsi target create iqn.2024-01.io.ioc:bench bench
IOCD_URL="iscsi://127.0.0.1:$IPORT/iqn.2024-01.io.ioc:bench/0"

# ---- tgt (foreground, its own control port and portal)
TPORT=$(free_port)
CTL=$(( (TPORT % 20000) + 1000 ))
tgtd -f -C "$CTL" --iscsi "portal=127.0.0.1:$TPORT" >"$WORK/tgtd.log" 2>&1 &
PIDS+=($!)
TGT_PID=$!
for _ in $(seq 100); do
    tgtadm -C "$CTL" --lld iscsi --op show --mode sys >/dev/null 2>&1 && break
    sleep 0.1
done
tgtadm -C "$CTL" --lld iscsi --op new --mode target --tid 1 -T iqn.2024-01.io.tgt:bench
tgtadm -C "$CTL" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$FILE"
tgtadm -C "$CTL" --lld iscsi --op bind --mode target --tid 1 -I ALL
TGT_URL="iscsi://127.0.0.1:$TPORT/iqn.2024-01.io.tgt:bench/1"

# run_read URL PID -> "IOPS CORES"
run_read() {
    local t0 c0 t1 c1 iops
    t0=$(date +%s.%N); c0=$(cpu_ticks "$2")
    timeout -s INT "$SECONDS_PER" iscsi-perf -m 32 -b 8 -r "$1" >"$WORK/perf.out" 2>&1 || true
    t1=$(date +%s.%N); c1=$(cpu_ticks "$2")
    iops=$(tr '\r' '\n' <"$WORK/perf.out" | grep -o 'iops average [0-9]*' | tail -1 | awk '{print $3}')
    echo "${iops:-0} $(calc "($c1 - $c0) / $(getconf CLK_TCK) / ($t1 - $t0)")"
}
run_write() {
    local t0 c0 t1 c1
    t0=$(date +%s.%N); c0=$(cpu_ticks "$2")
    qemu-img bench -w -d 32 -s 4k -c "$WCOUNT" -S 4190208 -f raw "$1" >"$WORK/bench.out" 2>&1
    t1=$(date +%s.%N); c1=$(cpu_ticks "$2")
    echo "$(calc "$WCOUNT / ($t1 - $t0)") $(calc "($c1 - $c0) / $(getconf CLK_TCK) / ($t1 - $t0)")"
}
calc() {
    awk "BEGIN {print $*}"
}
median() {
    sort -g | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'
}

: >"$WORK/results"
for r in $(seq "$REPEATS"); do
    for w in read write; do
        for s in iocd tgt; do
            if [ $s = iocd ]; then url=$IOCD_URL; pid=$IOCD_PID; else url=$TGT_URL; pid=$TGT_PID; fi
            res=$(run_$w "$url" "$pid")
            echo "$w $s $res" >>"$WORK/results"
            echo "run $r: $w $s: $res" >&2
        done
    done
done

echo
echo "4k random, QD32, one session; medians of $REPEATS runs; iocd --cores $IOCD_CORES"
printf '%-6s %-5s %10s %12s %12s\n' workload srv IOPS server-cores 'iocd/tgt'
for w in read write; do
    i=$(awk -v w=$w '$1==w && $2=="iocd" {print $3}' "$WORK/results" | median)
    t=$(awk -v w=$w '$1==w && $2=="tgt" {print $3}' "$WORK/results" | median)
    ic=$(awk -v w=$w '$1==w && $2=="iocd" {print $4}' "$WORK/results" | median)
    tc=$(awk -v w=$w '$1==w && $2=="tgt" {print $4}' "$WORK/results" | median)
    printf '%-6s %-5s %10.0f %12.2f\n' $w iocd "$i" "$ic"
    printf '%-6s %-5s %10.0f %12.2f %12.2f\n' $w tgt "$t" "$tc" "$(calc "$i / $t")"
done
