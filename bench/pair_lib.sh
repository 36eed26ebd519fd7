# bench/pair_lib.sh - shared by bench/nbd_pair.sh and bench/vhost_pair.sh
# (sourced): stop what was started by PID on exit, hold the file resident,
# and take the median of the last column of the results.

PIDS=()
pair_cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap pair_cleanup EXIT
trap 'exit 130' INT TERM

# pair_keep_resident FILE LOG [keep_resident.py options]: hold FILE in the
# page cache until exit; returns once it is loaded.
pair_keep_resident() {
    local file=$1 log=$2
    shift 2
    /usr/bin/python3 bench/keep_resident.py "$@" "$file" 2>"$log" &
    PIDS+=($!)
    for _ in $(seq 1200); do
        grep -q "large folios" "$log" 2>/dev/null && break
        sleep 0.1
    done
}

# pair_median: the median of the numbers on stdin, one per line.
pair_median() {
    sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
