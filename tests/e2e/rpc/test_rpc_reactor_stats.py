"""reactor_stats, and the spin cap that follows CPU contention (docs/reactor.md).

A reactor spins through short idle gaps up to --spin-max-us while it has its
CPU to itself, and at most 4 us while its run-queue delay says other threads
wait for that CPU. The uncontended case cannot be asserted on a shared test
machine; the contended one can: a CPU-bound process pinned to the reactor's
CPU guarantees it.
"""
import sys

from ioc_e2e import need, run

CONTENDED_CAP_NS = 4000
FIELDS = ("id", "iterations", "busy_iterations", "sleeps", "cqes", "msgs", "busy_ns",
          "idle_ns", "spin_window_ns", "spin_cap_ns", "contention_samples",
          "contended_samples", "holds", "inflight")


def test_rpc_reactor_stats_fields(make_iocd):
    d = make_iocd("--cores", "2", "--spin-max-us", "20")
    stats = d.rpc("reactor_stats")
    assert [r["id"] for r in stats] == [0, 1]
    for r in stats:
        assert set(FIELDS) <= set(r), f"missing: {set(FIELDS) - set(r)}"
        assert r["spin_cap_ns"] in (20000, CONTENDED_CAP_NS), r
        assert r["spin_window_ns"] <= r["spin_cap_ns"], r
        assert r["contended_samples"] <= r["contention_samples"], r


def test_rpc_reactor_spin_cap_drops_when_the_cpu_is_shared(make_iocd, procs):
    fio = need("fio")
    # --pin-cpus puts reactor 0 on CPU 0; the hog joins it there.
    d = make_iocd("--pin-cpus", "--spin-max-us", "20")
    uri = d.malloc_export("v", size="64MiB")
    hog = procs.start([sys.executable, "-c",
                       "import os\nos.sched_setaffinity(0, {0})\nwhile True: pass"])
    # QD1 traffic: every request comes after an idle gap, so the reactor
    # samples its run-queue delay (every 10 ms) while the hog competes.
    run([fio, "--name=c", "--ioengine=nbd", f"--uri={uri}", "--rw=randread", "--bs=4k",
         "--iodepth=1", "--time_based", "--runtime=2", "--size=64M"], timeout=60)
    (r,) = d.rpc("reactor_stats")
    assert hog.poll() is None, "the CPU hog exited early"
    assert r["contended_samples"] > 0, r
    assert r["spin_cap_ns"] == CONTENDED_CAP_NS, r
    assert r["spin_window_ns"] <= CONTENDED_CAP_NS, r
