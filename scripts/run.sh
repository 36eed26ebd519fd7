#!/usr/bin/env bash
# make run / make stop: the control-plane demo (scripts/demo.sh).
#
#   scripts/run.sh start   install what is missing (scripts/deps.sh run: etcd...),
#                          build, start a local etcd and three iocd nodes a, b, c
#                          (a runs the controller), apply a Pool per node and a
#                          3-replica Volume, wait until Online, print the NBD URI
#   scripts/run.sh stop    stop everything started here (by PID files under data/demo)
#   scripts/run.sh single  the old one-iocd demo (data/demo.img over NBD, no etcd);
#   scripts/run.sh single-stop
#
# Environment: DATA (default ./data), NBD_PORT (10809), DEMO_SIZE (1GiB).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-$PWD/data}
NBD_PORT=${NBD_PORT:-10809}
DEMO_SIZE=${DEMO_SIZE:-1GiB}
SOCK=$DATA/iocd.sock
PIDFILE=$DATA/iocd.pid
IOCCTL=build/iocctl

stop() {
    if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        pid=$(cat "$PIDFILE")
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        echo "stopped iocd (pid $pid)"
    else
        echo "no iocd running from $DATA"
    fi
    rm -f "$PIDFILE"
}

start() {
    make --no-print-directory build
    mkdir -p "$DATA"
    if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        echo "iocd already running (pid $(cat "$PIDFILE")); 'make stop' first"
        exit 1
    fi
    build/iocd --rpc-socket "$SOCK" --nbd-listen "127.0.0.1:$NBD_PORT" \
        >"$DATA/iocd.log" 2>&1 &
    echo $! >"$PIDFILE"
    for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
    if ! $IOCCTL -s "$SOCK" methods >/dev/null 2>&1; then
        echo "iocd did not start; its log:"; cat "$DATA/iocd.log"; stop; exit 1
    fi
    $IOCCTL -s "$SOCK" bdev create file demo "$DATA/demo.img" --size "$DEMO_SIZE" >/dev/null
    $IOCCTL -s "$SOCK" nbd export add demo demo >/dev/null
    uri="nbd://127.0.0.1:$NBD_PORT/demo"
    cat <<TXT

iocd is running (pid $(cat "$PIDFILE")), log in $DATA/iocd.log.
Volume 'demo' ($DEMO_SIZE, file $DATA/demo.img) is served at:

    $uri

Try it:
    nbdinfo $uri
    qemu-io -f raw $uri -c 'write -P 0x5a 0 1M' -c 'read -P 0x5a 0 1M'

Inspect:  $IOCCTL -s $SOCK bdev list
Stop:     make stop
TXT
}

cluster_start() {
    scripts/deps.sh run
    make --no-print-directory build
    DATA=$DATA scripts/demo.sh start build
}

case "${1:-start}" in
    start) cluster_start ;;
    stop) DATA=$DATA scripts/demo.sh stop ;;
    single) start ;;
    single-stop) stop ;;
    *) echo "usage: $0 start|stop|single|single-stop" >&2; exit 2 ;;
esac
