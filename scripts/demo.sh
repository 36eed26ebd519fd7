#!/usr/bin/env bash
# The control-plane demo behind `make run` (scripts/run.sh):
# a local etcd plus three iocd nodes (a, b, c) on loopback with separate data
# folders and ports, a Pool on each, a 3-replica Volume applied; prints
# `iocctl get volumes` and the NBD URI.
#   scripts/demo.sh start [BUILD] | stop
# Every process is recorded by PID under $DATA/demo and stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data}; case "$DATA" in /*) D=$DATA/demo ;; *) D=$PWD/$DATA/demo ;; esac; BUILD=${2:-build}
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_free() { /usr/bin/python3 -c 'import socket, sys; s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null; }
# node_port FILE: the port FILE recorded at the last start if it is free,
# else a new one (recorded). The same ports across `make stop` / `make run`
# keep the replicas' URIs, by which a restarted nexus finds its children in
# sync (src/nexus/nexus.c, saved_find); with new ports it finds none and the
# volume cannot come back without an operator choosing a replica.
node_port() {
    local p
    if [ -s "$1" ] && p=$(cat "$1") && port_free "$p"; then echo "$p"; return; fi
    p=$(free_port); echo "$p" >"$1"; echo "$p"
}

stop_pid() { # PIDFILE NAME: TERM, wait up to 5 s, then KILL
    local pid
    [ -f "$1" ] || return 0
    pid=$(cat "$1")
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        echo "stopped $2 (pid $pid)"
    fi
    rm -f "$1"
}

stop() {
    for n in a b c; do stop_pid "$D/$n/iocd.pid" "iocd $n"; done
    [ -f "$D/etcd/etcd.pid" ] && echo "stopped etcd (pid $(cat "$D/etcd/etcd.pid"))"
    scripts/etcd.sh stop "$D/etcd"
}

start() {
    mkdir -p "$D"
    url=$(scripts/etcd.sh start "$D/etcd")
    for n in a b c; do
        mkdir -p "$D/$n"
        [ -f "$D/$n/iocd.pid" ] && kill -0 "$(cat "$D/$n/iocd.pid")" 2>/dev/null && continue
        port=$(node_port "$D/$n/nbd.port")
        extra=(); [ "$n" = a ] && extra=(--controller)
        # iSCSI (when built in) defaults to one fixed port: node a serves it on a free one.
        if "$BUILD/iocd" --help | grep -q -- --iscsi-listen; then
            if [ "$n" = a ]; then extra+=(--iscsi-listen "127.0.0.1:$(node_port "$D/$n/iscsi.port")");
            else extra+=(--iscsi-listen none); fi
        fi
        "$BUILD/iocd" --rpc-socket "$D/$n/iocd.sock" --nbd-listen "127.0.0.1:$port" \
            --node "$n" --etcd "$url" --state-dir "$D/$n" "${extra[@]}" >"$D/$n/iocd.log" 2>&1 &
        echo $! >"$D/$n/iocd.pid"
    done
    for _ in $(seq 50); do
        [ "$("$BUILD/iocctl" --etcd "$url" get nodes 2>/dev/null | tail -n +2 | wc -l)" -ge 3 ] && break
        sleep 0.2
    done
    sed "s|/var/lib/ioc|$D|" examples/cluster.yaml | "$BUILD/iocctl" --etcd "$url" apply -f -
    for _ in $(seq 60); do
        phase=$("$BUILD/iocctl" --etcd "$url" get volume db -o json | /usr/bin/python3 -c \
            'import json,sys; print(json.load(sys.stdin).get("status",{}).get("phase",""))')
        [ "$phase" = Online ] && break
        sleep 0.5
    done
    "$BUILD/iocctl" --etcd "$url" get volumes
    uri=$("$BUILD/iocctl" --etcd "$url" get volume db -o json | /usr/bin/python3 -c \
        'import json,sys; print(json.load(sys.stdin).get("status",{}).get("uri") or "")')
    echo
    echo "etcd: $url   (export IOC_ETCD=$url; iocctl get volumes; iocctl describe volume db)"
    echo "NBD URI: ${uri:-<not yet: see iocctl describe volume db>}"
    [ -n "$uri" ] && echo "try: qemu-io -f raw $uri -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M'"
    echo "logs: $D/{a,b,c}/iocd.log, $D/etcd/etcd.log"
    echo "stop with: make stop   (or scripts/demo.sh stop)"
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start [BUILD] | stop" >&2; exit 2 ;;
esac
