#!/usr/bin/env bash
# bench/pool.sh - a thin pool volume against the file bdev under it, one run.
#
#   bench/pool.sh [BUILD_DIR]    env: SIZE_MIB (1024) RUNTIME (5 s) REPEATS (3) SNAPS (15)
#
# One iocd (1 core) serves over NBD, at the same time:
#   file   a file bdev on a file of SIZE_MIB (random data)
#   vol    a thin volume of SIZE_MIB in a pool (1 MiB clusters) on a second
#          file bdev, written through once first, so fully allocated
# Both files are held in the page cache in 4 KiB folios for the random
# workloads (bench/keep_resident.py --small-folios; see bench/README.md).
# and fio's nbd engine measures, round robin (file, vol, file, vol, ...),
# REPEATS times, medians and vol/file ratios:
#   randread 4k qd32, randwrite 4k qd32 (fully allocated volume)
#   write 1m qd8 sequential into an EMPTY thin volume (in a new pool on a new
#       file per repeat: every cluster a first write) against a file bdev on a
#       new file (both write where the file system has no blocks yet)
# Then snapshot creation (volume_snapshot round trip over the RPC socket,
# SNAPS times each, interleaved) on a 1 GiB and on a 64 GiB sparse volume,
# each with a few clusters written; medians and the ratio.
# Every process started here is stopped by PID on exit; the work directory
# is removed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-${IOC_BUILD:-$ROOT/build}}" && pwd)
SIZE_MIB=${SIZE_MIB:-1024}
RUNTIME=${RUNTIME:-5}
REPEATS=${REPEATS:-3}
SNAPS=${SNAPS:-15}

command -v fio >/dev/null || { echo "fio not found: install the Debian package 'fio'" >&2; exit 2; }
[ -x "$BUILD/iocd" ] || { echo "$BUILD/iocd missing: build first" >&2; exit 2; }

WORK=$(mktemp -d /var/tmp/ioc-bench-pool.XXXXXX)
IOCD_PID=
cleanup() {
    if [ -n "$IOCD_PID" ]; then
        kill -TERM "$IOCD_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$IOCD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$IOCD_PID" 2>/dev/null || true
        wait "$IOCD_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SOCK=$WORK/iocd.sock
"$BUILD/iocd" --rpc-socket "$SOCK" --nbd-listen "127.0.0.1:$PORT" --nbd-socket "$WORK/nbd.sock" \
    --log-level notice >"$WORK/iocd.log" 2>&1 &
IOCD_PID=$!

/usr/bin/python3 - "$SOCK" "$PORT" "$WORK" "$SIZE_MIB" "$RUNTIME" "$REPEATS" "$SNAPS" "$ROOT" <<'EOF'
import json, os, socket, statistics, subprocess, sys, time

sock, port, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
size_mib, runtime, repeats, snaps = int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
keep_resident = os.path.join(sys.argv[8], "bench", "keep_resident.py")
MiB = 1 << 20


def rpc(method, **params):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(sock)
        s.sendall((json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                               "params": params}) + "\n").encode())
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError(f"{method}: connection closed")
            buf += chunk
            try:
                r = json.loads(buf)
                break
            except ValueError:
                continue
    if "error" in r:
        raise RuntimeError(f"{method}: {r['error']}")
    return r["result"]


for _ in range(400):
    try:
        rpc("rpc_get_methods")
        break
    except OSError:
        time.sleep(0.05)
else:
    sys.exit("iocd did not answer within 20 s:\n" + open(os.path.join(work, "iocd.log")).read())


def hold_resident(path):
    """Hold path in the page cache in 4 KiB folios until stopped (bench/README.md,
    "4 KiB folios": in the kernel's large folios a 4 KiB buffered write walks
    every buffer head of its folio, and both systems would measure that)."""
    log = os.path.join(work, os.path.basename(path) + ".resident.log")
    with open(log, "w") as err:
        p = subprocess.Popen(["/usr/bin/python3", keep_resident, "--small-folios", path],
                             stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 600
    while "pages in large folios" not in open(log).read():
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            sys.exit(f"keep_resident.py {path} did not load it:\n" + open(log).read())
        time.sleep(0.5)
    return p, log


def stop_resident(held):
    for p, log in held:
        p.terminate()
        p.wait(30)
        print(open(log).read().strip())


def uri(name):
    return f"nbd://127.0.0.1:{port}/{name}"


def fio(name, rw, bs, qd, size=None, time_based=True):
    cmd = ["fio", "--name=b", "--ioengine=nbd", f"--uri={uri(name)}", f"--rw={rw}",
           f"--bs={bs}", f"--iodepth={qd}", "--output-format=json", "--thread",
           "--randrepeat=0", "--norandommap"]
    if time_based:
        cmd += ["--time_based", f"--runtime={runtime}"]
    if size:
        cmd += [f"--size={size}"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"fio {name} {rw}: {p.stderr}")
    job = json.loads(p.stdout[p.stdout.index("{"):])["jobs"][0]
    side = job["read"] if rw.endswith("read") else job["write"]
    return side["iops"], side["bw_bytes"] / MiB


size = size_mib * MiB
base = os.path.join(work, "file.raw")
with open(base, "wb") as f:
    for _ in range(size_mib):
        f.write(os.urandom(MiB))
rpc("bdev_file_create", name="file", path=base)
rpc("nbd_export_add", name="file", bdev="file")
rpc("pool_create", name="p", path=os.path.join(work, "pool.img"),
    size=(size_mib * 2 + 256) * MiB, cluster_size=MiB)
rpc("volume_create", pool="p", name="v", size=size)
rpc("nbd_export_add", name="vol", bdev="p/v")
fio("vol", "write", "1m", 8, size=f"{size_mib}M", time_based=False)   # allocate every cluster
held = [hold_resident(base), hold_resident(os.path.join(work, "pool.img"))]

res = {}
for r in range(repeats):
    for point, rw, bs, qd in (("randread 4k qd32", "randread", "4k", 32),
                              ("randwrite 4k qd32", "randwrite", "4k", 32)):
        for system in ("file", "vol"):
            iops, _ = fio(system, rw, bs, qd)
            res.setdefault((point, system), []).append(iops)
    # Sequential 1 MiB writes into an empty thin volume: in a new pool on a new
    # file, against a file bdev on a new file, so both write where the file
    # system has no blocks yet (reusing freed clusters would favour the pool).
    half = size // 2
    rpc("bdev_file_create", name=f"f{r}", path=os.path.join(work, f"f{r}.raw"), size=half)
    rpc("nbd_export_add", name=f"f{r}", bdev=f"f{r}")
    rpc("pool_create", name=f"q{r}", path=os.path.join(work, f"q{r}.img"),
        size=half + 64 * MiB, cluster_size=MiB)
    rpc("volume_create", pool=f"q{r}", name="e", size=half)
    rpc("nbd_export_add", name=f"e{r}", bdev=f"q{r}/e")
    for system in (f"f{r}", f"e{r}"):
        _, bw = fio(system, "write", "1m", 8, size=f"{size_mib // 2}M", time_based=False)
        res.setdefault(("write 1m qd8 (empty thin)", "vol" if system[0] == "e" else "file"),
                       []).append(bw)
    for export in (f"f{r}", f"e{r}"):
        rpc("nbd_export_remove", name=export)
    rpc("pool_destroy", name=f"q{r}")
    rpc("bdev_delete", name=f"f{r}")
    for path in (f"f{r}.raw", f"q{r}.img"):
        os.unlink(os.path.join(work, path))

stop_resident(held)
print(f"\n## pool volume vs file bdev (median of {repeats}, {runtime:g} s runs, 1 core)\n")
print("| workload | file bdev | thin volume | ratio | runs (file / volume) |")
print("|---|---|---|---|---|")
for point in ("randread 4k qd32", "randwrite 4k qd32", "write 1m qd8 (empty thin)"):
    f, v = statistics.median(res[(point, "file")]), statistics.median(res[(point, "vol")])
    unit = "MiB/s" if point.startswith("write 1m") else "IOPS"
    runs = " ".join(f"{x:,.0f}" for x in res[(point, "file")]) + " / " + \
        " ".join(f"{x:,.0f}" for x in res[(point, "vol")])
    print(f"| {point} | {f:,.0f} {unit} | {v:,.0f} {unit} | {v / f:.2f} | {runs} |")

# snapshot creation time: 1 GiB vs 64 GiB sparse volumes
for name, sz in (("g1", 1 << 30), ("g64", 64 << 30)):
    rpc("volume_create", pool="p", name=name, size=sz)
    rpc("nbd_export_add", name=name, bdev=f"p/{name}")
    subprocess.run(["fio", "--name=s", "--ioengine=nbd", f"--uri={uri(name)}", "--rw=randwrite",
                    "--bs=64k", "--size=1G", "--io_size=8M", "--output-format=json"],
                   capture_output=True, check=True)
    rpc("nbd_export_remove", name=name)
times = {"g1": [], "g64": []}
for i in range(snaps):
    for name in ("g1", "g64"):
        t0 = time.perf_counter()
        rpc("volume_snapshot", volume=f"p/{name}", name=f"{name}s{i}")
        times[name].append((time.perf_counter() - t0) * 1000)
        if i > 0:   # keep the chain short: merge the previous snapshot away
            rpc("volume_delete", volume=f"p/{name}s{i - 1}")
m1, m64 = statistics.median(times["g1"]), statistics.median(times["g64"])
print(f"\n## snapshot creation (volume_snapshot round trip, median of {snaps})\n")
print("| volume | median ms | min ms | max ms |")
print("|---|---|---|---|")
for name, label in (("g1", "1 GiB sparse"), ("g64", "64 GiB sparse")):
    t = times[name]
    print(f"| {label} | {statistics.median(t):.2f} | {min(t):.2f} | {max(t):.2f} |")
print(f"\n64 GiB / 1 GiB: {m64 / m1:.2f}")
EOF
