#!/usr/bin/python3
"""bench/replication_bench.py - the cost of replication and the speed of rebuild.

One run, REPEATS rounds; each round measures both sides back to back, and
the ratio reported is the median of the per-round ratios (this machine is
shared: absolute numbers swing by 2x between rounds, ratios much less):
  * 4k randwrite QD32 and 4k randread QD32 (fio's nbd engine) on a nexus
    with 3 remote replicas and on a nexus with 1 remote replica (each
    replica a malloc bdev exported by its own iocd on loopback);
  * a full rebuild of a fully written replica (SIZE_MIB, random data)
    against `nbdcopy` between the same two exports, measured in the same run.
Prints a table with the ratios and writes it to $BENCH_DIR/replication.md.

Environment: RUNTIME (fio seconds, default 3), REPEATS (5), SIZE_MIB (1024),
BENCH_DIR (/var/tmp/ioc-repl-bench), IOC_BUILD (build dir).
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("IOC_BUILD", str(ROOT / "build"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from ioc_e2e import Iocd  # noqa: E402

RUNTIME = float(os.environ.get("RUNTIME", "3"))
REPEATS = int(os.environ.get("REPEATS", "5"))
SIZE_MIB = int(os.environ.get("SIZE_MIB", "1024"))
WORK = Path(os.environ.get("BENCH_DIR", "/var/tmp/ioc-repl-bench"))


def fio(uri, rw):
    p = subprocess.run(["fio", "--name=b", "--ioengine=nbd", f"--uri={uri}", f"--rw={rw}",
                        "--bs=4k", "--iodepth=32", f"--runtime={RUNTIME}", "--time_based",
                        f"--size={SIZE_MIB}M", "--output-format=json"],
                       capture_output=True, text=True, check=True)
    j = json.loads(p.stdout[p.stdout.index("{"):])
    job = j["jobs"][0]
    return job["write" if "write" in rw else "read"]["iops"]


def replica(name):
    d = Iocd(WORK / name).start()
    d.rpc("bdev_malloc_create", name="m", size=f"{SIZE_MIB}MiB")
    d.rpc("nbd_export_add", name="m", bdev="m")
    return d


def wait_online(nx, name, uri):
    while True:
        (n,) = nx.rpc("nexus_list", name=name)
        for c in n["children"]:
            if c["uri"] == uri and c["state"] == "online":
                return c["rebuild"]
        time.sleep(0.05)


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    daemons = []
    try:
        reps = [replica(f"r{i}") for i in range(5)]
        daemons += reps
        nx = Iocd(WORK / "nexus").start()
        daemons.append(nx)
        nx.rpc("nexus_create", name="n3", children=[r.uri("m") for r in reps[:3]])
        nx.rpc("nexus_create", name="n1", children=[reps[3].uri("m")])
        for n in ("n1", "n3"):
            nx.rpc("nbd_export_add", name=n, bdev=n)
        res = {k: [] for k in ("w1", "w3", "r1", "r3", "rebuild", "nbdcopy")}

        # Fill n3 with random data: every replica is fully written.
        src = WORK / "random.raw"
        subprocess.run(["dd", "if=/dev/urandom", f"of={src}", "bs=1M", f"count={SIZE_MIB}",
                        "status=none"], check=True)
        subprocess.run(["nbdcopy", str(src), nx.uri("n3")], check=True)
        src.unlink()
        for _ in range(REPEATS):
            res["w1"].append(fio(nx.uri("n1"), "randwrite"))
            res["w3"].append(fio(nx.uri("n3"), "randwrite"))
            res["r1"].append(fio(nx.uri("n1"), "randread"))
            res["r3"].append(fio(nx.uri("n3"), "randread"))
            # nbdcopy from a replica to the spare, then the same copy as a rebuild.
            t = time.monotonic()
            subprocess.run(["nbdcopy", reps[0].uri("m"), reps[4].uri("m")], check=True)
            res["nbdcopy"].append(SIZE_MIB / (time.monotonic() - t))
            spare = reps[4].uri("m")
            nx.rpc("nexus_child_add", name="n3", uri=spare)
            rb = wait_online(nx, "n3", spare)
            res["rebuild"].append(rb["bytes_copied"] / 1048576 / rb["seconds"])
            nx.rpc("nexus_child_remove", name="n3", uri=spare)
    finally:
        for d in daemons:
            d.stop()
    med = {k: statistics.median(v) for k, v in res.items()}

    def ratio(a, b):
        return statistics.median(x / y for x, y in zip(res[a], res[b]))

    rows = [
        ("4k randwrite QD32 IOPS", med["w3"], med["w1"], ratio("w3", "w1"), 0.5),
        ("4k randread QD32 IOPS", med["r3"], med["r1"], ratio("r3", "r1"), 0.9),
        (f"full rebuild {SIZE_MIB} MiB, MiB/s (vs nbdcopy)", med["rebuild"], med["nbdcopy"],
         ratio("rebuild", "nbdcopy"), 0.8),
    ]
    out = ["| measure | 3 replicas / rebuild | 1 replica / nbdcopy | ratio | goal |",
           "| --- | ---: | ---: | ---: | ---: |"]
    for name, a, b, r, goal in rows:
        out.append(f"| {name} | {a:.0f} | {b:.0f} | {r:.2f} | >= {goal} |")
    out.append("")
    out.append(f"medians of {REPEATS} rounds (ratio: median of per-round ratios), "
               f"fio {RUNTIME:g} s each; raw: "
               + json.dumps({k: [round(x) for x in v] for k, v in res.items()}))
    text = "\n".join(out)
    print(text)
    (WORK / "replication.md").write_text(text + "\n")
    return 0 if all(r >= goal for _, _, _, r, goal in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
