"""Adaptive polling: an idle iocd (export, no client) uses ~no CPU."""
import time

import pytest

from ioc_e2e import proc_cpu_seconds, qemu_io

WINDOW = 10.0
LIMIT = 0.01   # fraction of one core


def idle_fraction(pid, window=WINDOW):
    c0, t0 = proc_cpu_seconds(pid), time.monotonic()
    time.sleep(window)
    c1, t1 = proc_cpu_seconds(pid), time.monotonic()
    return (c1 - c0) / (t1 - t0)


@pytest.mark.slow
def test_nbd_idle_cpu_after_io(make_iocd):
    """After a burst of IO the reactors back off to sleeping: < 1% of a core over 10 s."""
    iocd = make_iocd("--cores", "2")
    uri = iocd.malloc_export("v", size="64MiB")
    qemu_io(uri, "write -P 1 0 32M", "read -P 1 0 32M")
    time.sleep(0.5)
    frac = idle_fraction(iocd.pid)
    assert frac < LIMIT, f"idle iocd (2 reactors, adaptive) used {frac:.1%} of a core " \
                         f"over {WINDOW:.0f} s"


@pytest.mark.slow
def test_nbd_idle_cpu_connected_client_idle(iocd, procs):
    """An open but idle NBD connection does not keep the reactor spinning either."""
    from ioc_e2e import NbdClient
    iocd.malloc_export("v", size="16MiB")
    c = NbdClient(iocd.port, "v")
    try:
        assert c.write(0, b"x" * 4096) == 0
        time.sleep(0.5)
        frac = idle_fraction(iocd.pid, 5.0)
        assert frac < LIMIT, f"iocd with an idle connection used {frac:.1%} of a core over 5 s"
    finally:
        c.close()
