#!/usr/bin/env bash
# libiscsi's conformance suite against iocd's iSCSI target.
#
# Usage: scripts/iscsi-conformance.sh [--pool] [--size SIZE] [BUILD_DIR] [-- FAMILY...]
#   --pool   export a thin pool volume POOL/VOL instead of a file bdev
# Starts its own iocd (stopped by PID on exit) on a free loopback port,
# runs `iscsi-test-cu --dataloss -t F` for each test family F (default: ALL,
# SCSI, iSCSI and LINUX: 230 + 215 + 15 + 155 = 615 tests with Debian 12's
# libiscsi-bin) and prints "N passed, M failed". Exit status 0 iff no test failed. Tests listed in
# KNOWN_FAILURES (docs/iscsi.md says why) are reported but not counted.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD="$ROOT/build"
POOL=0
SIZE=256MiB
FAMILIES=(ALL SCSI iSCSI LINUX)
while [ $# -gt 0 ]; do
    case "$1" in
        --pool) POOL=1 ;;
        --size) SIZE=$2; shift ;;
        --) shift; FAMILIES=("$@"); break ;;
        *) BUILD=$1 ;;
    esac
    shift
done
BUILD=$(cd "$BUILD" && pwd)

# Tests excluded with the standard's reason in docs/iscsi.md (at most 5).
KNOWN_FAILURES=()

if ! command -v iscsi-test-cu >/dev/null; then
    echo "iscsi-test-cu not found: install the Debian package 'libiscsi-bin' (scripts/deps.sh test)" >&2
    exit 2
fi

WORK=$(mktemp -d /tmp/ioc-iscsi-cu.XXXXXX)
IOCD_PID=""
cleanup() {
    if [ -n "$IOCD_PID" ]; then
        kill -TERM "$IOCD_PID" 2>/dev/null || true
        wait "$IOCD_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SOCK="$WORK/iocd.sock"
"$BUILD/iocd" --rpc-socket "$SOCK" --nbd-listen none --iscsi-listen "127.0.0.1:$PORT" \
    --log-level warn >"$WORK/iocd.log" 2>&1 &
IOCD_PID=$!

rpc() {
    /usr/bin/python3 - "$SOCK" "$1" "$2" <<'PY'
import json, socket, sys, time
path, method, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
for _ in range(200):
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        break
    except OSError:
        time.sleep(0.05)
s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode() + b"\n")
buf = b""
while not buf.endswith(b"\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
r = json.loads(buf)
if "error" in r:
    sys.exit(f"{method}: {r['error']['message']}")
PY
}

IQN=iqn.2024-01.io.ioc:conformance
if [ "$POOL" = 1 ]; then
    rpc pool_create "{\"name\":\"cu\",\"path\":\"$WORK/pool.img\",\"size\":\"1GiB\"}"
    rpc volume_create "{\"pool\":\"cu\",\"name\":\"vol\",\"size\":\"$SIZE\",\"thin\":true}"
    BDEV=cu/vol
else
    truncate -s "$SIZE" "$WORK/disk.img"
    rpc bdev_file_create "{\"name\":\"cu\",\"path\":\"$WORK/disk.img\"}"
    BDEV=cu
fi
rpc iscsi_target_create "{\"iqn\":\"$IQN\",\"luns\":[{\"lun\":0,\"bdev\":\"$BDEV\"}]}"

START=$(date +%s)
total=0
failed_all=0
: >"$WORK/failed"
for fam in "${FAMILIES[@]}"; do
    iscsi-test-cu --dataloss -n -t "$fam" "iscsi://127.0.0.1:$PORT/$IQN/0" >"$WORK/cu.log" 2>&1 || true
    grep -E "had failures" "$WORK/cu.log" | sed "s/^ */$fam: /" >>"$WORK/failed" || true
    t=$(awk '/^ *tests/ {print $3; exit}' "$WORK/cu.log")
    f=$(awk '/^ *tests/ {print $5; exit}' "$WORK/cu.log")
    if [ -z "$t" ]; then
        echo "iscsi-test-cu -t $fam produced no summary:" >&2
        tail -20 "$WORK/cu.log" >&2
        t=1
        f=1
    fi
    total=$((total + t))
    failed_all=$((failed_all + f))
done
END=$(date +%s)
known=0
for k in "${KNOWN_FAILURES[@]}"; do
    if grep -q "Test $k had failures" "$WORK/failed"; then
        known=$((known + 1))
        echo "known failure (docs/iscsi.md): $k"
    fi
done
failed=$((failed_all - known))
if [ -s "$WORK/failed" ]; then
    cat "$WORK/failed"
fi
if ! kill -0 "$IOCD_PID" 2>/dev/null; then
    echo "iocd died during the run:" >&2
    tail -20 "$WORK/iocd.log" >&2
    failed=$((failed + 1))
fi
echo "target: $( [ "$POOL" = 1 ] && echo "thin pool volume" || echo "file bdev" ), $((END - START)) s"
echo "$((total - failed_all)) passed, $failed failed"
[ "$failed" -eq 0 ]
