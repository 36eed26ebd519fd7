"""Exports and the daemon going away under live clients; request size limits."""
import errno
import os
import time

import pytest

from ioc_e2e import MiB, NbdClient, NbdError, need, qemu_io


def connections(iocd, export):
    return {e["name"]: e["connections"] for e in iocd.rpc("nbd_export_list")}.get(export)


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def start_fio(procs, uri, jobs=2, runtime=60):
    return procs.start([need("fio"), "--name=bg", "--ioengine=nbd", f"--uri={uri}",
                        "--thread", "--rw=randrw", "--bs=64k", "--iodepth=16",
                        f"--numjobs={jobs}", "--time_based", f"--runtime={runtime}",
                        "--size=32M"])


def test_nbd_lifecycle_export_remove_with_clients(iocd, procs):
    uri = iocd.malloc_export("v", size="64MiB")
    p = start_fio(procs, uri)
    wait_for(lambda: connections(iocd, "v") == 2 or p.poll() is not None,
             what="fio to connect")
    time.sleep(0.5)
    iocd.rpc("nbd_export_remove", name="v")
    # the clients are disconnected: fio stops with an error instead of running 60 s
    try:
        p.wait(15)
    except Exception:
        pytest.fail("fio still running 15 s after its export was removed")
    assert p.returncode != 0, "fio did not notice its export going away"
    assert iocd.rpc("nbd_export_list") == []
    iocd.rpc("bdev_delete", name="v")       # nothing holds the bdev any more
    assert iocd.rpc("bdev_list") == []
    # and new exports work
    uri = iocd.malloc_export("w", size="8MiB")
    qemu_io(uri, "write -P 4 0 1M", "read -P 4 0 1M")


def test_nbd_lifecycle_sigterm_during_io(make_iocd, procs):
    iocd = make_iocd("--cores", "2")
    uri = iocd.malloc_export("v", size="64MiB")
    p = start_fio(procs, uri, jobs=4)
    wait_for(lambda: connections(iocd, "v") == 4 or p.poll() is not None,
             what="fio to connect")
    time.sleep(0.5)
    t0 = time.monotonic()
    status, killed = iocd.stop(timeout=10)
    assert not killed, "iocd did not exit within 10 s of SIGTERM with 4 busy clients"
    assert status == 0, f"iocd exited {status} on SIGTERM under load\n{iocd.log_tail()}"
    assert time.monotonic() - t0 < 5, "shutdown with busy clients took over 5 s"


def test_nbd_lifecycle_sigterm_with_delayed_io(iocd):
    """IO held in the error bdev (delay_us) must not keep shutdown waiting forever."""
    iocd.rpc("bdev_malloc_create", name="m", size="8MiB")
    iocd.rpc("bdev_error_create", name="e", base="m")
    iocd.rpc("nbd_export_add", name="e", bdev="e")
    iocd.rpc("bdev_error_inject", name="e", io_type="read", errno=0, delay_us=3_000_000)
    c = NbdClient(iocd.port, "e")
    t0 = time.monotonic()
    c.send(0, 0, 4096)
    time.sleep(0.3)
    status, killed = iocd.stop(timeout=10)
    c.s.close()
    assert not killed, "iocd hung on SIGTERM with a delayed IO in flight"
    assert status == 0, f"exit {status}\n{iocd.log_tail()}"
    assert time.monotonic() - t0 < 8


def test_nbd_lifecycle_delay_injection(iocd):
    iocd.rpc("bdev_malloc_create", name="m", size="8MiB")
    iocd.rpc("bdev_error_create", name="e", base="m")
    iocd.rpc("nbd_export_add", name="e", bdev="e")
    iocd.rpc("bdev_error_inject", name="e", io_type="write", errno=0, delay_us=300_000)
    c = NbdClient(iocd.port, "e")
    try:
        t0 = time.monotonic()
        assert c.write(0, b"q" * 4096) == 0
        assert time.monotonic() - t0 >= 0.3, "delay_us did not delay the write"
        t0 = time.monotonic()
        assert c.read(0, 4096) == b"q" * 4096
        assert time.monotonic() - t0 < 0.3, "a read was delayed by a write rule"
    finally:
        c.close()


def test_nbd_lifecycle_max_payload(iocd):
    """32 MiB requests (the advertised maximum) work both ways."""
    iocd.malloc_export("v", size="64MiB")
    c = NbdClient(iocd.port, "v")
    try:
        data = os.urandom(32 * MiB)
        assert c.write(16 * MiB, data) == 0
        assert c.read(16 * MiB, 32 * MiB) == data
    finally:
        c.close()


def test_nbd_lifecycle_4k_block_bdev(iocd):
    """A 4096-byte block bdev: qemu does read-modify-write for small writes;
    raw requests not aligned to 4096 are refused with EINVAL."""
    iocd.rpc("bdev_malloc_create", name="b4k", size="16MiB", block_size=4096)
    iocd.rpc("nbd_export_add", name="b4k", bdev="b4k")
    uri = iocd.uri("b4k")
    qemu_io(uri, "write -P 0x10 0 64k", "write -P 0x20 512 512",
            "read -P 0x10 0 512", "read -P 0x20 512 512", "read -P 0x10 1024 3072")
    c = NbdClient(iocd.port, "b4k")
    try:
        assert c.write(512, b"x" * 512) == errno.EINVAL
        assert c.write(4096, b"y" * 4096) == 0
        assert c.read(4096, 4096) == b"y" * 4096
    finally:
        c.close()


@pytest.mark.slow
def test_nbd_lifecycle_stress_two_cores(make_iocd):
    """Four connections on two reactors, mixed sizes up to 1 MiB, all verified."""
    from ioc_e2e import run
    iocd = make_iocd("--cores", "2")
    uri = iocd.malloc_export("v", size="256MiB")
    p = run([need("fio"), "--name=s", "--ioengine=nbd", f"--uri={uri}", "--thread",
             "--rw=randwrite", "--bssplit=4k/40:64k/30:256k/20:1m/10", "--iodepth=32",
             "--numjobs=4", "--size=64M", "--offset_increment=64M",
             "--verify=crc32c", "--verify_fatal=1", "--output-format=json"],
            check=False, timeout=180)
    assert p.returncode == 0, f"fio exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
