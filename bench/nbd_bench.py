#!/usr/bin/python3
"""The measuring half of bench/nbd.sh: runs fio against every system,
round-robin, and prints medians and iocd/peer ratios.

bench/nbd.sh starts the servers and passes them here as
    --system NAME,URI,PID     (URI "raw" = fio's io_uring engine on --file)
It owns their lifetimes; this script only reads /proc/PID/stat around each
fio run to charge the server's CPU time (utime+stime, all threads) to the
bytes moved.

Order: for each repeat, for each workload point, every system once. Slow
drift of the machine (page cache, thermal, other tenants) then spreads over
all systems instead of landing on whichever ran last.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

GiB = 1 << 30
MiB = 1 << 20

# (name, rw, bs, iodepth per connection, connections)
POINTS_FULL = [
    ("randread 4k qd1", "randread", "4k", 1, 1),
    ("randread 4k qd32", "randread", "4k", 32, 1),
    ("randwrite 4k qd32", "randwrite", "4k", 32, 1),
    ("read 64k qd8", "read", "64k", 8, 1),
    ("read 128k qd8", "read", "128k", 8, 1),
    ("read 256k qd8", "read", "256k", 8, 1),
    ("write 64k qd8", "write", "64k", 8, 1),
    ("write 128k qd8", "write", "128k", 8, 1),
    ("write 256k qd8", "write", "256k", 8, 1),
    ("randread 4k qd32 x2", "randread", "4k", 32, 2),
    ("randwrite 4k qd32 x2", "randwrite", "4k", 32, 2),
    ("read 128k qd8 x2", "read", "128k", 8, 2),
    ("write 128k qd8 x2", "write", "128k", 8, 2),
]
POINTS_QUICK = [p for p in POINTS_FULL if p[0] in (
    "randread 4k qd1", "randread 4k qd32", "randwrite 4k qd32",
    "read 128k qd8", "write 128k qd8", "randread 4k qd32 x2")]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def resident_fraction(path):
    p = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", path],
                       capture_output=True, text=True, check=True)
    return int(p.stdout.split()[0]) / os.path.getsize(path)


def fio_cmd(point, system_uri, path, runtime_ms):
    _, rw, bs, qd, conns = point
    size = os.path.getsize(path)
    cmd = ["fio", "--name=bench", f"--rw={rw}", f"--bs={bs}", f"--iodepth={qd}",
           f"--numjobs={conns}", "--group_reporting", "--time_based",
           f"--runtime={runtime_ms}ms", "--output-format=json",
           "--norandommap", "--randrepeat=0"]
    if rw in ("read", "write") and conns > 1:
        # each connection streams its own part of the file
        cmd += [f"--size={size // conns}", f"--offset_increment={size // conns}"]
    else:
        cmd += [f"--size={size}"]
    if system_uri == "raw":
        cmd += ["--ioengine=io_uring", f"--filename={path}", "--direct=0"]
    else:
        cmd += ["--ioengine=nbd", f"--uri={system_uri}"]
    return cmd


def run_point(point, system, path, runtime_ms, log_dir, tag):
    name, uri, pid = system
    cmd = fio_cmd(point, uri, path, runtime_ms)
    c0 = cpu_seconds(pid) if pid else None
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=runtime_ms / 1000 + 120)
    c1 = cpu_seconds(pid) if pid else None
    with open(os.path.join(log_dir, f"{tag}.json"), "w") as f:
        f.write(p.stdout)
    if p.returncode != 0:
        raise RuntimeError(f"fio failed ({p.returncode}) for {name} / {point[0]}:\n"
                           f"{' '.join(cmd)}\n{p.stderr[-2000:]}")
    j = json.loads(p.stdout[p.stdout.index("{"):])
    (job,) = j["jobs"]
    d = job["read"] if point[1] in ("read", "randread") else job["write"]
    if job["error"] or d["io_bytes"] == 0:
        raise RuntimeError(f"fio error {job['error']} for {name} / {point[0]}")
    pct = d["clat_ns"].get("percentile", {})
    moved = d["io_bytes"]
    return {
        "iops": d["iops"],
        "mibs": d["bw_bytes"] / MiB,
        "p50_us": pct.get("50.000000", 0) / 1000,
        "p99_us": pct.get("99.000000", 0) / 1000,
        "cpu_per_gib": (c1 - c0) / (moved / GiB) if pid else None,
        "server_cpu_s": (c1 - c0) if pid else None,
        "bytes": moved,
    }


def fmt(v, digits=0):
    if v is None:
        return "-"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


# The foundation issue's goals: (what, workload, measure, peer or None for the
# fastest peer, goal, whether higher is better). Measures: iops, p50_us, and
# cpu_eff (IOPS per server CPU-second, i.e. the inverse of CPU per GiB).
GOALS = [
    ("4k randread QD32 vs the fastest peer", "randread 4k qd32", "iops", None, 1.2, True),
    ("4k randwrite QD32 vs the fastest peer", "randwrite 4k qd32", "iops", None, 1.2, True),
    ("IOPS per server CPU-second vs nbdkit (4k randread QD32)", "randread 4k qd32",
     "cpu_eff", "nbdkit", 2.0, True),
    ("QD1 p50 latency vs qemu-nbd", "randread 4k qd1", "p50_us", "qemu-nbd", 0.9, False),
    ("128k sequential read vs nbdkit", "read 128k qd8", "iops", "nbdkit", 1.2, True),
    ("128k sequential write vs nbdkit", "write 128k qd8", "iops", "nbdkit", 1.2, True),
]


def goal_value(m, measure):
    if measure == "cpu_eff":
        return 1 / m["cpu_per_gib"] if m["cpu_per_gib"] else None
    return m[measure]


def goal_lines(med, iocd, peers):
    """One line per goal whose workload and peers ran: the ratio and met / NOT met."""
    out = ["", f"Goals ({iocd}; medians of this run):", ""]
    for what, point, measure, peer, goal, higher in GOALS:
        mine = med.get((point, iocd))
        cands = [p for p in peers if p != "raw" and (peer is None or p == peer)
                 and med.get((point, p)) is not None]
        if mine is None or not cands or goal_value(mine, measure) is None:
            continue
        vals = {p: goal_value(med[(point, p)], measure) for p in cands}
        best = max(cands, key=lambda p: vals[p]) if higher else min(cands, key=lambda p: vals[p])
        if not vals[best]:
            continue
        ratio = goal_value(mine, measure) / vals[best]
        met = ratio >= goal if higher else ratio <= goal
        out.append(f"- {what}: {ratio:.2f} ({best}; goal {'>=' if higher else '<='} {goal}) "
                   f"{'met' if met else 'NOT met'}")
    return out


def report(points, systems, results, out):
    names = [s[0] for s in systems]
    med = {}
    for (pt, sysname), runs in results.items():
        med[(pt, sysname)] = {
            k: (statistics.median([r[k] for r in runs]) if runs[0][k] is not None else None)
            for k in runs[0]
        }
        iops = [r["iops"] for r in runs]
        med[(pt, sysname)]["spread"] = (max(iops) - min(iops)) / statistics.median(iops)
    lines = []
    lines.append("| workload | system | IOPS | MiB/s | p50 µs | p99 µs | server CPU s/GiB "
                 "| IOPS spread |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for pt in points:
        for n in names:
            m = med.get((pt[0], n))
            if m is None:
                continue
            lines.append(f"| {pt[0]} | {n} | {fmt(m['iops'])} | {fmt(m['mibs'], 1)} | "
                         f"{fmt(m['p50_us'], 1)} | {fmt(m['p99_us'], 1)} | "
                         f"{fmt(m['cpu_per_gib'], 2)} | {m['spread']:.0%} |")
    iocds = [n for n in names if n.startswith("iocd")]
    peers = [n for n in names if not n.startswith("iocd")]
    lines.append("")
    lines.append("IOPS spread: (max - min) / median over the repeats; ratios smaller "
                 "than the spreads involved are noise.")
    lines.append("")
    lines.append("Ratios iocd/peer: IOPS (higher is better), then server CPU per GiB "
                 "(lower is better), medians.")
    lines.append("")
    lines.append("| workload | iocd | " + " | ".join(f"vs {p}" for p in peers) + " |")
    lines.append("|---|---|" + "---:|" * len(peers))
    for pt in points:
        for i in iocds:
            mi = med.get((pt[0], i))
            if mi is None:
                continue
            cells = []
            for p in peers:
                mp = med.get((pt[0], p))
                if mp is None:
                    cells.append("-")
                    continue
                c = f"{mi['iops'] / mp['iops']:.2f}"
                if mi["cpu_per_gib"] and mp["cpu_per_gib"]:
                    c += f" (cpu {mi['cpu_per_gib'] / mp['cpu_per_gib']:.2f})"
                cells.append(c)
            lines.append(f"| {pt[0]} | {i} | " + " | ".join(cells) + " |")
    if iocds:
        lines += goal_lines(med, iocds[0], peers)
    text = "\n".join(lines) + "\n"
    with open(out, "w") as f:
        f.write(text)
    return text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", required=True)
    ap.add_argument("--runtime", type=float, default=7.0, help="seconds per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", required=True, help="directory for fio JSON and the table")
    ap.add_argument("--system", action="append", required=True, help="NAME,URI,PID")
    a = ap.parse_args()

    systems = []
    for s in a.system:
        name, uri, pid = s.split(",")
        systems.append((name, uri, int(pid) if pid not in ("", "-") else None))
    points = POINTS_QUICK if a.quick else POINTS_FULL
    runtime_ms = int(a.runtime * 1000)
    os.makedirs(a.out, exist_ok=True)
    total = len(points) * len(systems) * a.repeats
    est = total * (a.runtime + 0.6)
    print(f"nbd bench: {len(points)} workloads x {len(systems)} systems x {a.repeats} "
          f"repeats = {total} runs of {a.runtime:g} s, about {est / 60:.0f} min", flush=True)

    results = {}
    n = 0
    t_start = time.monotonic()
    for rep in range(a.repeats):
        for pt in points:
            for sysd in systems:
                n += 1
                res = resident_fraction(a.file)
                tag = f"r{rep}-{pt[0].replace(' ', '_')}-{sysd[0]}"
                r = run_point(pt, sysd, a.file, runtime_ms, a.out, tag)
                results.setdefault((pt[0], sysd[0]), []).append(r)
                warn = "" if res >= 0.99 else "  <-- file NOT fully resident"
                print(f"[{n:3}/{total}] rep {rep + 1} {pt[0]:<22} {sysd[0]:<9} "
                      f"{r['iops']:>9,.0f} IOPS {r['mibs']:>8,.1f} MiB/s "
                      f"p50 {r['p50_us']:>7.1f} p99 {r['p99_us']:>7.1f} us "
                      f"cpu/GiB {fmt(r['cpu_per_gib'], 2):>6}  resident {res:.1%}{warn}",
                      flush=True)
    with open(os.path.join(a.out, "runs.json"), "w") as f:
        json.dump([{"workload": k[0], "system": k[1], "runs": v}
                   for k, v in results.items()], f, indent=1)
    print(f"\ndone in {(time.monotonic() - t_start) / 60:.1f} min\n")
    sys.stdout.write(report(points, systems, results, os.path.join(a.out, "table.md")))


if __name__ == "__main__":
    main()
