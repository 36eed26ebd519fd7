"""qemu-io patterns over NBD: write/read/verify, zeroes, discard, aio, flush, FUA."""
import errno

import pytest

from ioc_e2e import MiB, NbdClient, qemu_io


def make_export(iocd, kind, tmp_path, read_only=False):
    if kind == "malloc":
        return iocd.malloc_export("v", size="16MiB", read_only=read_only)
    return iocd.file_export("v", tmp_path / "v.raw", size="16MiB", read_only=read_only)


@pytest.mark.parametrize("kind", ["malloc", "file"])
def test_nbd_qemu_io_patterns(iocd, tmp_path, kind):
    uri = make_export(iocd, kind, tmp_path)
    qemu_io(uri,
            "write -P 0xab 0 1M",
            "read -P 0xab 0 1M",
            # sub-block and unaligned: 512 B block, then a 3000 B run across blocks
            "write -P 0x5c 1536 512",
            "write -P 0x77 70001 3000",
            "read -P 0xab 0 1536",
            "read -P 0x5c 1536 512",
            "read -P 0xab 2048 67953",
            "read -P 0x77 70001 3000",
            "read -P 0xab 73001 975575",
            # write zeroes
            "write -P 0x11 1M 1M",
            "write -z 1M 1M",
            "read -P 0 1M 1M",
            "write -z -u 1M 512k",
            "read -P 0 1M 512k",
            # discard leaves neighbours alone
            "write -P 0xcd 2M 2M",
            "discard 2M 1M",
            "read -P 0xcd 3M 1M",
            "read -P 0 1M 1M",
            # async writes, then aio_flush waits for them
            "aio_write -P 0x21 4M 64k",
            "aio_write -P 0x22 4325376 64k 64k",
            "aio_write -P 0x23 8M 1M",
            "aio_flush",
            "read -P 0x21 4M 64k",
            "read -P 0x22 4325376 128k",
            "read -P 0x23 8M 1M",
            "flush",
            # FUA (qemu-io spells it -f)
            "write -f -P 0x99 5M 4k",
            "read -P 0x99 5M 4k",
            "aio_write -f -P 0x98 6M 8k",
            "aio_flush",
            "read -P 0x98 6M 8k",
            # last block of the device
            "write -P 0xee 16773120 4096",
            "read -P 0xee 16773120 4096")

    # a wrong pattern is detected: the checks above are real
    p = qemu_io(uri, "read -P 0x12 0 4k", check=False)
    assert p.returncode != 0 and "Pattern verification failed" in p.stdout + p.stderr

    # a second connection sees the data of the first
    qemu_io(uri, "read -P 0xab 0 1536", "read -P 0x99 5M 4k")


@pytest.mark.parametrize("kind", ["malloc", "file"])
def test_nbd_qemu_io_beyond_end(iocd, tmp_path, kind):
    uri = make_export(iocd, kind, tmp_path)
    p = qemu_io(uri, "write -P 1 16M 4k", check=False)
    assert p.returncode != 0, "write past the end of a 16 MiB export succeeded"
    p = qemu_io(uri, "read 16773120 8k", check=False)
    assert p.returncode != 0, "read across the end of the export succeeded"
    qemu_io(uri, "write -P 3 0 4k", "read -P 3 0 4k")


def test_nbd_qemu_io_file_persists(iocd, tmp_path):
    """Data written with FUA / flushed is in the backing file."""
    uri = make_export(iocd, "file", tmp_path)
    qemu_io(uri, "write -f -P 0x42 12M 64k", "write -P 0x43 13M 4k", "flush")
    data = (tmp_path / "v.raw").read_bytes()
    assert data[12 * MiB:12 * MiB + 65536] == b"\x42" * 65536
    assert data[13 * MiB:13 * MiB + 4096] == b"\x43" * 4096


@pytest.mark.parametrize("kind", ["malloc", "file"])
def test_nbd_qemu_io_read_only(iocd, tmp_path, kind):
    uri = make_export(iocd, kind, tmp_path, read_only=True)
    # qemu refuses to open a read-only export for writing
    p = qemu_io(uri, "write -P 1 0 4k", check=False)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert any(w in out.lower() for w in ("permission", "not permitted", "read-only")), out
    # reads work
    qemu_io(uri, "read -P 0 0 64k", read_only=True)
    # and the server itself refuses a write sent anyway (NBD_EPERM)
    c = NbdClient(iocd.port, "v")
    try:
        assert c.flags & 2, "read-only export without NBD_FLAG_READ_ONLY"
        err = c.write(0, b"\x07" * 4096)
        assert err == errno.EPERM, f"write on read-only export: NBD error {err}, want EPERM"
        assert c.read(0, 4096) == bytes(4096)
    finally:
        c.close()
