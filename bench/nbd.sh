#!/usr/bin/env bash
# bench/nbd.sh - iocd against its peers over NBD, in one run, with ratios.
#
# One 1 GiB file of random data, served at the same time by every system:
#   raw        fio's io_uring engine on the file itself (the limit)
#   iocd-cN    iocd, file bdev, --cores N (N from IOCD_CORES)
#   nbdkit     nbdkit file plugin
#   qemu-nbd   qemu-nbd --aio=io_uring --cache=writeback
#   qsd        qemu-storage-daemon, file blockdev aio=io_uring, NBD export
# and measured with fio's nbd engine (bench/nbd_bench.py), round-robin over
# the systems, REPEATS times; medians and iocd/peer ratios are printed at the
# end and written to $BENCH_DIR/results/table.md.
#
# Everything goes through the page cache (no O_DIRECT anywhere), and the file
# is held resident for the whole run by bench/keep_resident.py: this VM's
# kernel drops idle page-cache pages within a minute or two, which would turn
# later runs into disk benchmarks. Residency is printed before every run.
#
# Environment:
#   QUICK=1          6 workloads, 1.5 s runs: about 3 minutes
#   RUNTIME=7        seconds per fio run (default 7; QUICK: 1.5)
#   REPEATS=3        rounds over all systems
#   IOCD_CORES="1"   iocd variants to run ("1 2" adds iocd-c2, ~20% longer)
#   SYSTEMS="raw iocd nbdkit qemu-nbd qsd"
#   SIZE_MIB=1024    file size
#   FOLIOS=small     the file's page cache in 4 KiB folios (keep_resident.py
#                    --small-folios); "kernel" keeps the kernel's large folios,
#                    where 4k random writes measure ext4's folio walk, not servers
#   BENCH_DIR=/var/tmp/ioc-bench   file, logs, fio JSON, table
#   PORT0=10950      first TCP port used
#   IOC_BUILD=DIR    use the iocd/iocctl in DIR as built (default: `make build`, build/)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${IOC_BUILD:-$ROOT/build}
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then RUNTIME=${RUNTIME:-1.5}; else RUNTIME=${RUNTIME:-7}; fi
REPEATS=${REPEATS:-3}
IOCD_CORES=${IOCD_CORES:-1}
SYSTEMS=${SYSTEMS:-"raw iocd nbdkit qemu-nbd qsd"}
SIZE_MIB=${SIZE_MIB:-1024}
FOLIOS=${FOLIOS:-small}
WORK=${BENCH_DIR:-/var/tmp/ioc-bench}
PORT0=${PORT0:-10950}
PY=/usr/bin/python3

scripts/deps.sh bench
# IOC_BUILD names a build directory to use as it is; otherwise `make build`.
[ -n "${IOC_BUILD:-}" ] || make --no-print-directory build >/dev/null

mkdir -p "$WORK"
FILE=$WORK/bench.raw
RESULTS=$WORK/results
rm -rf "$RESULTS"; mkdir -p "$RESULTS"

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "bench: pid $pid ignored SIGTERM, killing" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$(stat -c %s "$FILE" 2>/dev/null || echo 0)" != $((SIZE_MIB << 20)) ]; then
    echo "bench: writing $SIZE_MIB MiB of random data to $FILE"
    dd if=/dev/urandom of="$FILE" bs=1M count="$SIZE_MIB" status=none
fi

# Hold the file in the page cache (in 4 KiB folios unless FOLIOS=kernel, see
# keep_resident.py); wait until it is all there and locked.
KEEP_ARGS=()
[ "$FOLIOS" = kernel ] || KEEP_ARGS=(--small-folios)
$PY bench/keep_resident.py "${KEEP_ARGS[@]}" "$FILE" 2>"$WORK/keep_resident.log" &
PIDS+=($!)
for _ in $(seq 1200); do
    res=$(fincore --bytes --noheadings --output RES "$FILE")
    [ "$res" -ge $((SIZE_MIB << 20)) ] && grep -q "large folios" "$WORK/keep_resident.log" && break
    sleep 0.1
done
cat "$WORK/keep_resident.log"
fincore "$FILE"

wait_nbd() { # uri pid name
    for _ in $(seq 200); do
        kill -0 "$2" 2>/dev/null || { echo "bench: $3 exited at startup:" >&2; cat "$WORK/$3.log" >&2; exit 1; }
        nbdinfo --size "$1" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "bench: $3 not serving $1 after 10 s" >&2; cat "$WORK/$3.log" >&2; exit 1
}

ARGS=()
port=$PORT0
for sys in $SYSTEMS; do
    case $sys in
    raw)
        ARGS+=(--system "raw,raw,-") ;;
    iocd)
        for c in $IOCD_CORES; do
            sock=$WORK/iocd-c$c.sock
            "$BUILD/iocd" --rpc-socket "$sock" --nbd-listen "127.0.0.1:$port" --cores "$c" --iscsi-listen none \
                --log-level notice 2>"$WORK/iocd-c$c.log" &
            pid=$!; PIDS+=($pid)
            for _ in $(seq 200); do "$BUILD/iocctl" -s "$sock" methods >/dev/null 2>&1 && break; sleep 0.05; done
            "$BUILD/iocctl" -s "$sock" bdev create file bench "$FILE" >/dev/null
            "$BUILD/iocctl" -s "$sock" nbd export add bench bench >/dev/null
            uri=nbd://127.0.0.1:$port/bench
            wait_nbd "$uri" "$pid" "iocd-c$c"
            ARGS+=(--system "iocd-c$c,$uri,$pid")
            port=$((port + 1))
        done ;;
    nbdkit)
        nbdkit -f -i 127.0.0.1 -p "$port" file file="$FILE" 2>"$WORK/nbdkit.log" &
        pid=$!; PIDS+=($pid)
        uri=nbd://127.0.0.1:$port/
        wait_nbd "$uri" "$pid" nbdkit
        ARGS+=(--system "nbdkit,$uri,$pid")
        port=$((port + 1)) ;;
    qemu-nbd)
        # -e 8: qemu-nbd serves one client at a time unless told otherwise;
        # -t: keep serving after the last client leaves.
        qemu-nbd -f raw --aio=io_uring --cache=writeback -x bench -b 127.0.0.1 -p "$port" \
            -e 8 -t "$FILE" 2>"$WORK/qemu-nbd.log" &
        pid=$!; PIDS+=($pid)
        uri=nbd://127.0.0.1:$port/bench
        wait_nbd "$uri" "$pid" qemu-nbd
        ARGS+=(--system "qemu-nbd,$uri,$pid")
        port=$((port + 1)) ;;
    qsd)
        qemu-storage-daemon \
            --blockdev "driver=file,node-name=disk,filename=$FILE,aio=io_uring,cache.direct=off" \
            --nbd-server "addr.type=inet,addr.host=127.0.0.1,addr.port=$port" \
            --export "type=nbd,id=exp0,node-name=disk,name=bench,writable=on" \
            2>"$WORK/qsd.log" &
        pid=$!; PIDS+=($pid)
        uri=nbd://127.0.0.1:$port/bench
        wait_nbd "$uri" "$pid" qsd
        ARGS+=(--system "qsd,$uri,$pid")
        port=$((port + 1)) ;;
    *) echo "bench: unknown system $sys" >&2; exit 2 ;;
    esac
done

quick=()
[ "$QUICK" = 1 ] && quick=(--quick)
echo "bench: $(nproc) CPUs, $(uname -r), fio $(fio --version), $("$BUILD/iocd" --version 2>&1 | head -1)"
$PY bench/nbd_bench.py --file "$FILE" --runtime "$RUNTIME" --repeats "$REPEATS" \
    --out "$RESULTS" "${quick[@]}" "${ARGS[@]}"
echo
echo "fio JSON and table: $RESULTS"
