#!/usr/bin/env bash
# Start or stop a local single-member etcd on loopback, by PID.
#
#   scripts/etcd.sh start DIR [CLIENT_PORT [PEER_PORT]]   prints the client URL
#   scripts/etcd.sh stop DIR
#
# Data, log and PID file live in DIR. Ports default to free ones chosen by
# the kernel. Used by scripts/demo.sh and by hand; the e2e tests start etcd
# from a pytest fixture (tests/e2e/control/conftest.py) the same way.
set -euo pipefail

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR [CLIENT_PORT [PEER_PORT]]" >&2; exit 2; }
case "$cmd" in
start)
    command -v etcd >/dev/null || { echo "etcd not found: install the Debian package etcd-server (scripts/deps.sh)" >&2; exit 1; }
    mkdir -p "$dir"
    if [ -f "$dir/etcd.pid" ] && kill -0 "$(cat "$dir/etcd.pid")" 2>/dev/null; then
        cat "$dir/etcd.url"; exit 0
    fi
    cport=${3:-$(free_port)}; pport=${4:-$(free_port)}
    url="http://127.0.0.1:$cport"
    etcd --name ioc --data-dir "$dir/data" \
        --listen-client-urls "$url" --advertise-client-urls "$url" \
        --listen-peer-urls "http://127.0.0.1:$pport" \
        --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
        --initial-cluster "ioc=http://127.0.0.1:$pport" >"$dir/etcd.log" 2>&1 &
    echo $! >"$dir/etcd.pid"
    echo "$url" >"$dir/etcd.url"
    for _ in $(seq 100); do
        if curl -sf -X POST "$url/v3/kv/range" -d '{"key":"AA=="}' >/dev/null 2>&1; then
            echo "$url"; exit 0
        fi
        kill -0 "$(cat "$dir/etcd.pid")" 2>/dev/null || break
        sleep 0.1
    done
    echo "etcd did not start; see $dir/etcd.log" >&2; tail -5 "$dir/etcd.log" >&2; exit 1 ;;
stop)
    [ -f "$dir/etcd.pid" ] || exit 0
    pid=$(cat "$dir/etcd.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$dir/etcd.pid" ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
