#!/usr/bin/env bash
# bench/vhost.sh - the shared-memory fast path against its limit and its peers.
#
# One file of random data, read through two backings, both identical for
# every system:
#   resident  the file through the page cache (no O_DIRECT), held resident by
#             bench/keep_resident.py (mapped, mlocked, touched) and checked
#             with fincore before every run: no disk IO, so the numbers show
#             the cost of each path itself (the shared-memory path vs qsd).
#   odirect   everyone opens the file with O_DIRECT: all paths hit the same
#             device (the disk is usually the limit).
# Systems (per backing):
#   direct       vblk-perf --file: io_uring on the file itself (the limit;
#                --buffered on the resident backing)
#   fio          fio io_uring engine on the file (cross-check of vblk-perf)
#   iocd-MODE    vblk-perf --socket (libvblk) -> iocd vhost-user-blk export of
#                a file bdev (direct=true / false), MODE = eventfd | busy | adaptive
#                (VIRTIO_RING_F_EVENT_IDX negotiated, as by default)
#   iocd-MODE-noeidx  the same with vblk-perf --no-event-idx (ring flags
#                instead of event indexes), for comparison
#   iocd-MODE-nomap  the same against a bdev created with map: false (resident
#                backing; odirect files are never mapped): every read through
#                io_uring, as before session 6, which shows what the
#                transport itself costs against direct
#   iocd2-q2-MODE  the same against a second iocd started with --cores 2,
#                the client driving 2 queues of its connection
#                (vblk-perf --queues 2, QD split across them), so each queue
#                runs on its own reactor; MODE = adaptive | busy. The
#                one-core, one-queue rows above stay for comparison.
#   qsd          vblk-perf (adaptive) -> qemu-storage-daemon vhost-user-blk
#                export (file, aio=io_uring, cache.direct=on / off)
#   nbd          fio's nbd engine -> iocd NBD export of the same bdev, loopback
# Workloads: 4k randread QD32 (IOPS) and 4k randread QD1 (latency), REPEATS
# rounds; each round runs every backing and system in turn (interleaved), and
# the tables show medians. For libvblk rows the client also counts the call
# eventfd signals it consumed and the kicks it wrote, per IO (QD32). CPU seconds are the client's (vblk-perf's
# getrusage, or fio's usr+sys) and the server's (utime+stime from
# /proc/PID/stat over the run). Finally: iocd's CPU with one connected, idle
# libvblk client over 10 s. Load averages are printed at start and end: the
# numbers mean little on a machine busy with other work.
#
# Environment: RUNTIME=5 (seconds per run), REPEATS=3, SIZE_MIB=1024,
# BACKINGS="resident odirect", SYSTEMS="direct fio iocd-eventfd iocd-busy
# iocd-adaptive iocd-adaptive-noeidx iocd-adaptive-nomap iocd2-q2-adaptive iocd2-q2-busy qsd nbd",
# BENCH_DIR=/var/tmp/ioc-vhost-bench, IOC_BUILD=build.
# About (2 workloads x 2 backings x 10 systems x REPEATS x RUNTIME) + 30 s:
# ~10 minutes by default.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${IOC_BUILD:-$ROOT/build}
RUNTIME=${RUNTIME:-5}
REPEATS=${REPEATS:-3}
SIZE_MIB=${SIZE_MIB:-1024}
BACKINGS=${BACKINGS:-resident odirect}
SYSTEMS=${SYSTEMS:-direct fio iocd-eventfd iocd-busy iocd-adaptive iocd-adaptive-noeidx iocd-adaptive-nomap iocd2-q2-adaptive iocd2-q2-busy qsd nbd}
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

rpc() { $PY - "${RPC_SOCK:-$WORK/iocd.sock}" "$@" <<'PYEOF'
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
rpc bdev_file_create "{\"name\": \"odirect\", \"path\": \"$FILE\", \"direct\": true}"
rpc bdev_file_create "{\"name\": \"resident\", \"path\": \"$FILE\", \"direct\": false, \"block_size\": 4096}"
for b in odirect resident; do
    rpc vhost_blk_export_add "{\"socket\": \"$WORK/iocd-$b.vhost.sock\", \"bdev\": \"$b\"}"
    rpc nbd_export_add "{\"name\": \"$b\", \"bdev\": \"$b\"}"
done
rpc bdev_file_create "{\"name\": \"resident-nomap\", \"path\": \"$FILE\", \"direct\": false, \"block_size\": 4096, \"map\": false}"
rpc vhost_blk_export_add "{\"socket\": \"$WORK/iocd-resident-nomap.vhost.sock\", \"bdev\": \"resident-nomap\"}"
ln -sf "$WORK/iocd-odirect.vhost.sock" "$WORK/iocd-odirect-nomap.vhost.sock"
# a second iocd with two reactors: one client's two queues run on both
"$IOCD" --rpc-socket "$WORK/iocd2.sock" --nbd-listen none --cores 2 \
    "${EXTRA[@]}" --log-level warn 2>"$WORK/iocd2.log" &
IOCD2_PID=$!; PIDS+=($IOCD2_PID); wait_sock "$WORK/iocd2.sock"; sleep 0.2
export RPC_SOCK=$WORK/iocd2.sock
rpc bdev_file_create "{\"name\": \"odirect\", \"path\": \"$FILE\", \"direct\": true}"
rpc bdev_file_create "{\"name\": \"resident\", \"path\": \"$FILE\", \"direct\": false, \"block_size\": 4096}"
for b in odirect resident; do
    rpc vhost_blk_export_add "{\"socket\": \"$WORK/iocd2-$b.vhost.sock\", \"bdev\": \"$b\", \"num_queues\": 2}"
done
unset RPC_SOCK
qemu-storage-daemon \
    --blockdev "driver=file,node-name=odirect,filename=$FILE,aio=io_uring,cache.direct=on" \
    --blockdev "driver=file,node-name=resident,filename=$FILE,aio=io_uring,cache.direct=off" \
    --export "type=vhost-user-blk,id=vd,node-name=odirect,addr.type=unix,addr.path=$WORK/qsd-odirect.sock,writable=on" \
    --export "type=vhost-user-blk,id=vr,node-name=resident,addr.type=unix,addr.path=$WORK/qsd-resident.sock,writable=on" \
    >"$WORK/qsd.log" 2>&1 &
QSD_PID=$!; PIDS+=($QSD_PID); wait_sock "$WORK/qsd-odirect.sock"; wait_sock "$WORK/qsd-resident.sock"

# ---- keep the file in the page cache for the resident backing
$PY bench/keep_resident.py "$FILE" "$WORK/keep.pid" 2>"$WORK/keep.log" &
KEEP_PID=$!; PIDS+=($KEEP_PID)
for _ in $(seq 600); do [ -s "$WORK/keep.pid" ] && break; sleep 0.1; done
cat "$WORK/keep.log" >&2
# fincore: bytes of FILE in the page cache; a resident run needs all of it
resident_check() {
    local cached; cached=$(fincore --bytes --noheadings --output RES "$FILE" | tr -d ' ')
    if [ "$cached" -lt $((SIZE_MIB << 20)) ]; then
        echo "bench: only $cached of $((SIZE_MIB << 20)) bytes resident; reading it in" >&2
        cat "$FILE" >/dev/null
        cached=$(fincore --bytes --noheadings --output RES "$FILE" | tr -d ' ')
    fi
    echo "$cached" >>"$WORK/fincore.log"
    [ "$cached" -ge $((SIZE_MIB << 20)) ] || { echo "bench: $FILE not resident ($cached)" >&2; exit 1; }
}
: >"$WORK/fincore.log"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

# run BACKING SYSTEM QD ROUND: one measurement -> $WORK/BACKING-SYSTEM-qdQD-ROUND.json
run_one() {
    local bk=$1 sys=$2 qd=$3 round=$4 out="$WORK/$1-$2-qd$3-$4.json" spid="" t0 t1
    local buf=() fdirect=1 eidx=() mode sock_bk=$1
    if [ "$bk" = resident ]; then buf=(--buffered); fdirect=0; resident_check; fi
    case $sys in iocd-*|nbd) spid=$IOCD_PID ;; iocd2-*) spid=$IOCD2_PID ;; qsd) spid=$QSD_PID ;; esac
    mode=${sys#iocd-}; mode=${mode#iocd2-q2-}
    case $mode in *-noeidx) mode=${mode%-noeidx}; eidx=(--no-event-idx) ;; esac
    case $mode in *-nomap) mode=${mode%-nomap}; sock_bk=$bk-nomap ;; esac
    [ -n "$spid" ] && t0=$(cpu_ticks "$spid")
    case $sys in
        direct) "$PERF" --file "$FILE" "${buf[@]}" --rw randread --bs 4k --qd "$qd" --runtime "$RUNTIME" \
                    --json >"$out.client" ;;
        iocd-*) "$PERF" --socket "$WORK/iocd-$sock_bk.vhost.sock" --mode "$mode" "${eidx[@]}" --rw randread --bs 4k \
                    --qd "$qd" --runtime "$RUNTIME" --json >"$out.client" ;;
        iocd2-q2-*) "$PERF" --socket "$WORK/iocd2-$bk.vhost.sock" --queues 2 --mode "$mode" "${eidx[@]}" \
                    --rw randread --bs 4k --qd "$qd" --runtime "$RUNTIME" --json >"$out.client" ;;
        qsd)    "$PERF" --socket "$WORK/qsd-$bk.sock" --mode adaptive --rw randread --bs 4k --qd "$qd" \
                    --runtime "$RUNTIME" --json >"$out.client" ;;
        fio)    fio --name=b --filename="$FILE" --ioengine=io_uring --direct=$fdirect --rw=randread --bs=4k \
                    --iodepth="$qd" --runtime="$RUNTIME" --time_based --output-format=json >"$out.fio" ;;
        nbd)    fio --name=b --ioengine=nbd --uri="nbd+unix:///$bk?socket=$WORK/nbd.sock" --rw=randread \
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
    if c.get("engine") == "vblk" and c.get("ios"):
        r.update(calls_io=c["calls"] / c["ios"], kicks_io=c["kicks"] / c["ios"],
                 backoffs=c["backoffs"], preempts=c["preempts"])
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

for qd in 32 1; do
    for round in $(seq "$REPEATS"); do
        for bk in $BACKINGS; do
            for sys in $SYSTEMS; do
                echo "bench: $bk $sys 4k randread qd$qd round $round" >&2
                run_one "$bk" "$sys" "$qd" "$round"
            done
        done
    done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- idle: one connected libvblk client doing nothing
"$PERF" --socket "$WORK/iocd-odirect.vhost.sock" --rw randread --qd 4 --runtime 0.5 --idle 14 >/dev/null &
IDLE_PID=$!; PIDS+=($IDLE_PID); sleep 1.5
t0=$(cpu_ticks "$IOCD_PID"); sleep 10; t1=$(cpu_ticks "$IOCD_PID")
IDLE=$($PY -c "print(f'{($t1 - $t0) / $(getconf CLK_TCK) / 10 * 100:.2f}')")

$PY - "$WORK" "$SYSTEMS" "$REPEATS" "$IDLE" "$RUNTIME" "$BACKINGS" "$LOAD0" "$LOAD1" <<'PYEOF'
import json, statistics, sys
work, systems, reps, idle, runtime = sys.argv[1], sys.argv[2].split(), int(sys.argv[3]), sys.argv[4], sys.argv[5]
backings, load0, load1 = sys.argv[6].split(), sys.argv[7], sys.argv[8]
fin = [int(x) for x in open(f"{work}/fincore.log").read().split()]
print(f"\nload average (1/5/15 min): {load0} at start, {load1} at end")
if fin:
    print(f"fincore before each resident run: min {min(fin) >> 20} MiB resident ({len(fin)} checks)")
title = {"resident": "buffered file held in the page cache", "odirect": "O_DIRECT file"}
for bk in backings:
    def med(sys_, qd, key):
        return statistics.median(json.load(open(f"{work}/{bk}-{sys_}-qd{qd}-{r}.json"))[key]
                                 for r in range(1, reps + 1))
    print(f"\n4k randread, {bk} backing ({title[bk]}), {runtime} s runs, medians of {reps}\n")
    def medopt(sys_, qd, key, fmt):
        try:
            return fmt.format(med(sys_, qd, key))
        except KeyError:
            return "-"
    print("| system | QD32 IOPS | vs direct | QD32 client CPU s | QD32 server CPU s | QD32 calls/IO | QD32 kicks/IO | QD1 IOPS | QD1 p50 us | QD1 p99 us |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    d = med("direct", 32, "iops") if "direct" in systems else None
    for s in systems:
        rel = f"{med(s, 32, 'iops') / d:.2f}" if d else "-"
        print(f"| {s} | {med(s, 32, 'iops'):.0f} | {rel} | {med(s, 32, 'ccpu'):.2f} | "
              f"{med(s, 32, 'scpu'):.2f} | {medopt(s, 32, 'calls_io', '{:.3f}')} | "
              f"{medopt(s, 32, 'kicks_io', '{:.4f}')} | {med(s, 1, 'iops'):.0f} | "
              f"{med(s, 1, 'p50'):.1f} | {med(s, 1, 'p99'):.1f} |")
    if "iocd-adaptive" in systems:
        a = med("iocd-adaptive", 32, "iops")
        if d:
            print(f"\n{bk}: adaptive / direct io_uring (QD32): {a / d:.2f}   (goal >= 0.90)")
        if "qsd" in systems:
            print(f"{bk}: adaptive / qemu-storage-daemon (QD32): {a / med('qsd', 32, 'iops'):.2f}   (goal >= 1.20)")
        if d and "iocd-adaptive-nomap" in systems:
            print(f"{bk}: adaptive with map: false (every read through io_uring) / direct io_uring "
                  f"(QD32): {med('iocd-adaptive-nomap', 32, 'iops') / d:.2f}")
    ad = [f"{s} {med(s, 32, 'backoffs'):.0f} ({med(s, 32, 'preempts'):.0f} preempted)"
          for s in systems if "adaptive" in s and s.startswith("iocd")]
    if ad:
        print(f"{bk}: adaptive spin back-offs per QD32 run (median): " + ", ".join(ad))
    for s in ("iocd2-q2-adaptive", "iocd2-q2-busy"):
        if s in systems and d:
            print(f"{bk}: {s} (iocd --cores 2, 2 queues) / direct io_uring (QD32): "
                  f"{med(s, 32, 'iops') / d:.2f}   (goal for adaptive >= 0.90)")
print(f"\niocd with one idle connected client: {idle}% of a core over 10 s   (goal < 1%)")
PYEOF
