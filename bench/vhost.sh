#!/usr/bin/env bash
# bench/vhost.sh - the shared-memory fast path against its limit and its peers.
#
# One file of random data, opened with O_DIRECT by everyone (so all paths hit
# the same device, and the page cache flatters no one):
#   direct       vblk-perf --file: io_uring on the file itself (the limit)
#   fio          fio io_uring engine on the file (cross-check of vblk-perf)
#   iocd-MODE    vblk-perf --socket (libvblk) -> iocd vhost-user-blk export of
#                a file bdev (direct=true), MODE = eventfd | busy | adaptive
#   qsd          vblk-perf (adaptive) -> qemu-storage-daemon vhost-user-blk
#                export (file, aio=io_uring, cache.direct=on)
#   nbd          fio's nbd engine -> iocd NBD export of the same bdev, loopback
# Workloads: 4k randread QD32 (IOPS) and 4k randread QD1 (latency), REPEATS
# rounds, medians. CPU seconds are the client's (vblk-perf's getrusage, or
# fio's usr+sys) and the server's (utime+stime from /proc/PID/stat over the
# run). Finally: iocd's CPU with one connected, idle libvblk client over 10 s.
#
# Environment: RUNTIME=5 (seconds per run), REPEATS=3, SIZE_MIB=1024,
# BENCH_DIR=/var/tmp/ioc-vhost-bench, IOC_BUILD=build. About
# (2 workloads x 7 systems x REPEATS x RUNTIME) + 30 s: ~4 minutes by default.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${IOC_BUILD:-$ROOT/build}
RUNTIME=${RUNTIME:-5}
REPEATS=${REPEATS:-3}
SIZE_MIB=${SIZE_MIB:-1024}
WORK=${BENCH_DIR:-/var/tmp/ioc-vhost-bench}
PY=/usr/bin/python3

scripts/deps.sh bench
if [ -z "${IOC_BUILD:-}" ]; then make --no-print-directory build >/dev/null; fi
PERF=$BUILD/vblk-perf; [ -x "$PERF" ] || PERF=$BUILD/tools/vblk-perf
IOCD=$BUILD/iocd

mkdir -p "$WORK"; rm -f "$WORK"/*.sock "$WORK"/*.json
FILE=$WORK/bench.raw
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

if [ ! -f "$FILE" ] || [ "$(stat -c %s "$FILE")" -ne $((SIZE_MIB << 20)) ]; then
    echo "bench: writing $SIZE_MIB MiB of random data to $FILE" >&2
    head -c $((SIZE_MIB << 20)) /dev/urandom >"$FILE"
fi

rpc() { $PY - "$WORK/iocd.sock" "$@" <<'PYEOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": sys.argv[2],
                      "params": json.loads(sys.argv[3])}).encode() + b"\n")
buf = b""
while not buf.endswith(b"\n"):
    buf += s.recv(65536)
r = json.loads(buf)
if "error" in r: sys.exit(f"rpc {sys.argv[2]}: {r['error']}")
PYEOF
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wait_sock() { for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.05; done; echo "no $1" >&2; exit 1; }

# ---- servers
EXTRA=(); "$IOCD" --help 2>&1 | grep -q -- --iscsi-listen && EXTRA=(--iscsi-listen none)
"$IOCD" --rpc-socket "$WORK/iocd.sock" --nbd-listen none --nbd-socket "$WORK/nbd.sock" \
    "${EXTRA[@]}" --log-level warn 2>"$WORK/iocd.log" &
IOCD_PID=$!; PIDS+=($IOCD_PID); wait_sock "$WORK/iocd.sock"; sleep 0.2
rpc bdev_file_create "{\"name\": \"b\", \"path\": \"$FILE\", \"direct\": true}"
rpc vhost_blk_export_add "{\"socket\": \"$WORK/iocd.vhost.sock\", \"bdev\": \"b\"}"
rpc nbd_export_add '{"name": "b", "bdev": "b"}'
qemu-storage-daemon --blockdev "driver=file,node-name=f,filename=$FILE,aio=io_uring,cache.direct=on" \
    --export "type=vhost-user-blk,id=v,node-name=f,addr.type=unix,addr.path=$WORK/qsd.sock,writable=on" \
    >"$WORK/qsd.log" 2>&1 &
QSD_PID=$!; PIDS+=($QSD_PID); wait_sock "$WORK/qsd.sock"

# run SYSTEM QD ROUND: one measurement -> $WORK/SYSTEM-qdQD-ROUND.json
run_one() {
    local sys=$1 qd=$2 round=$3 out="$WORK/$1-qd$2-$3.json" spid="" t0 t1
    case $sys in iocd-*|nbd) spid=$IOCD_PID ;; qsd) spid=$QSD_PID ;; esac
    [ -n "$spid" ] && t0=$(cpu_ticks "$spid")
    case $sys in
        direct) "$PERF" --file "$FILE" --rw randread --bs 4k --qd "$qd" --runtime "$RUNTIME" --json >"$out.client" ;;
        iocd-*) "$PERF" --socket "$WORK/iocd.vhost.sock" --mode "${sys#iocd-}" --rw randread --bs 4k \
                    --qd "$qd" --runtime "$RUNTIME" --json >"$out.client" ;;
        qsd)    "$PERF" --socket "$WORK/qsd.sock" --mode adaptive --rw randread --bs 4k --qd "$qd" \
                    --runtime "$RUNTIME" --json >"$out.client" ;;
        fio)    fio --name=b --filename="$FILE" --ioengine=io_uring --direct=1 --rw=randread --bs=4k \
                    --iodepth="$qd" --runtime="$RUNTIME" --time_based --output-format=json >"$out.fio" ;;
        nbd)    fio --name=b --ioengine=nbd --uri="nbd+unix:///b?socket=$WORK/nbd.sock" --rw=randread \
                    --bs=4k --iodepth="$qd" --size=$((SIZE_MIB))M --runtime="$RUNTIME" --time_based \
                    --output-format=json >"$out.fio" ;;
    esac
    [ -n "$spid" ] && t1=$(cpu_ticks "$spid")
    $PY - "$out" "$sys" "${t0:-0}" "${t1:-0}" "$(getconf CLK_TCK)" <<'PYEOF'
import json, os, sys
out, sys_, t0, t1, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
if os.path.exists(out + ".client"):
    c = json.load(open(out + ".client"))
    r = {"iops": c["iops"], "p50": c["lat_p50_us"], "p99": c["lat_p99_us"], "ccpu": c["cpu_s"],
         "secs": c["runtime_s"]}
else:
    text = open(out + ".fio").read()  # the nbd engine prints a line before the JSON
    j = json.loads(text[text.index("{"):])["jobs"][0]
    rd = j["read"]; pct = rd["clat_ns"].get("percentile", {})
    secs = j["job_runtime"] / 1000
    r = {"iops": rd["iops"], "p50": pct.get("50.000000", 0) / 1000, "p99": pct.get("99.000000", 0) / 1000,
         "ccpu": (j["usr_cpu"] + j["sys_cpu"]) / 100 * secs, "secs": secs}
r["scpu"] = (t1 - t0) / hz
json.dump(r, open(out, "w"))
PYEOF
}

SYSTEMS="direct fio iocd-eventfd iocd-busy iocd-adaptive qsd nbd"
for qd in 32 1; do
    for round in $(seq "$REPEATS"); do
        for sys in $SYSTEMS; do
            echo "bench: $sys 4k randread qd$qd round $round" >&2
            run_one "$sys" "$qd" "$round"
        done
    done
done

# ---- idle: one connected libvblk client doing nothing
"$PERF" --socket "$WORK/iocd.vhost.sock" --rw randread --qd 4 --runtime 0.5 --idle 14 >/dev/null &
IDLE_PID=$!; PIDS+=($IDLE_PID); sleep 1.5
t0=$(cpu_ticks "$IOCD_PID"); sleep 10; t1=$(cpu_ticks "$IOCD_PID")
IDLE=$($PY -c "print(f'{($t1 - $t0) / $(getconf CLK_TCK) / 10 * 100:.2f}')")

$PY - "$WORK" "$SYSTEMS" "$REPEATS" "$IDLE" "$RUNTIME" <<'PYEOF'
import json, statistics, sys
work, systems, reps, idle, runtime = sys.argv[1], sys.argv[2].split(), int(sys.argv[3]), sys.argv[4], sys.argv[5]
def med(sys_, qd, key):
    return statistics.median(json.load(open(f"{work}/{sys_}-qd{qd}-{r}.json"))[key]
                             for r in range(1, reps + 1))
print(f"\n4k randread, O_DIRECT backing, {runtime} s runs, medians of {reps}\n")
print("| system | QD32 IOPS | vs direct | QD32 client CPU s | QD32 server CPU s | QD1 IOPS | QD1 p50 us | QD1 p99 us |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
d = med("direct", 32, "iops")
for s in systems:
    print(f"| {s} | {med(s, 32, 'iops'):.0f} | {med(s, 32, 'iops') / d:.2f} | {med(s, 32, 'ccpu'):.2f} | "
          f"{med(s, 32, 'scpu'):.2f} | {med(s, 1, 'iops'):.0f} | {med(s, 1, 'p50'):.1f} | {med(s, 1, 'p99'):.1f} |")
a, q = med("iocd-adaptive", 32, "iops"), med("qsd", 32, "iops")
print(f"\nadaptive / direct io_uring (QD32): {a / d:.2f}   (goal >= 0.90)")
print(f"adaptive / qemu-storage-daemon (QD32): {a / q:.2f}   (goal >= 1.20)")
print(f"iocd with one idle connected client: {idle}% of a core over 10 s   (goal < 1%)")
PYEOF
