"""Errors injected under an export reach the client as the right errno."""
import errno

import pytest

from ioc_e2e import NbdClient, qemu_io


@pytest.fixture
def err_export(iocd):
    iocd.rpc("bdev_malloc_create", name="base", size="16MiB")
    iocd.rpc("bdev_error_create", name="err", base="base")
    iocd.rpc("nbd_export_add", name="err", bdev="err")
    return iocd.uri("err")


def test_nbd_errors_eio_write(iocd, err_export):
    uri = err_export
    qemu_io(uri, "write -P 0x5a 0 1M")
    iocd.rpc("bdev_error_inject", name="err", io_type="write", errno="EIO")
    p = qemu_io(uri, "write -P 0x66 0 64k", check=False)
    assert p.returncode != 0, "write succeeded with EIO injected"
    assert "Input/output error" in p.stdout + p.stderr, p.stdout + p.stderr
    # reads still work and see the old data
    qemu_io(uri, "read -P 0x5a 0 1M")
    iocd.rpc("bdev_error_clear", name="err")
    qemu_io(uri, "write -P 0x66 0 64k", "read -P 0x66 0 64k")


def test_nbd_errors_enospc(iocd, err_export):
    iocd.rpc("bdev_error_inject", name="err", io_type="write", errno="ENOSPC")
    p = qemu_io(err_export, "write -P 1 0 4k", check=False)
    assert p.returncode != 0
    assert "No space left on device" in p.stdout + p.stderr, p.stdout + p.stderr
    # raw: the NBD error code is ENOSPC (28) and the connection stays usable
    c = NbdClient(iocd.port, "err")
    try:
        assert c.write(0, b"x" * 4096) == errno.ENOSPC
        assert c.read(0, 4096) == bytes(4096)
    finally:
        c.close()


def test_nbd_errors_read_and_flush(iocd, err_export):
    iocd.rpc("bdev_error_inject", name="err", io_type="read", errno="EIO")
    p = qemu_io(err_export, "read 0 4k", check=False)
    assert p.returncode != 0 and "Input/output error" in p.stdout + p.stderr
    qemu_io(err_export, "write -P 2 0 4k")      # writes unaffected
    iocd.rpc("bdev_error_clear", name="err")
    iocd.rpc("bdev_error_inject", name="err", io_type="flush", errno="EIO")
    c = NbdClient(iocd.port, "err")
    try:
        assert c.flush() == errno.EIO
        assert c.read(0, 4096) == b"\x02" * 4096
    finally:
        c.close()


def test_nbd_errors_range_and_count(iocd, err_export):
    """Rules restricted to a byte range, and expiring after `count` hits."""
    iocd.rpc("bdev_error_inject", name="err", io_type="write", errno="EIO",
             offset="1MiB", length="1MiB")
    c = NbdClient(iocd.port, "err")
    try:
        assert c.write(0, b"a" * 4096) == 0
        assert c.write(1 << 20, b"b" * 4096) == errno.EIO
        assert c.write((2 << 20) - 4096, b"b" * 4096) == errno.EIO
        assert c.write(2 << 20, b"c" * 4096) == 0
        iocd.rpc("bdev_error_clear", name="err")
        iocd.rpc("bdev_error_inject", name="err", io_type="all", errno="EIO", count=2)
        assert c.write(0, b"d" * 512) == errno.EIO
        assert c.cmd(0, 0, 512)[0] == errno.EIO          # a read is also hit
        assert c.write(0, b"e" * 512) == 0                # rule expired
        assert c.read(0, 512) == b"e" * 512
    finally:
        c.close()
