"""The file bdev's mapping (src/bdev/file/file_map.h) under NBD.

Cached READs copied out of the mapping (bdev_file.c file_read_mapped): the
bytes, the counter, and `map: false`, which turns the mapping off.

Large WRITEs received in place (nbd_conn.c parse_request, bdev_file.c
file_write_window): the payload of a WRITE of 32 KiB or more, to a buffered
file whose pages are all in the page cache, is received straight into the
file's mapped page cache instead of into a buffer that is then written. The
rest are written from a buffer as before. These tests mix both kinds in one
transfer and check every byte in the file itself, with FUA, and on a full
file system, where a store into the page cache cannot be backed and the
WRITE must still end in ENOSPC, not in a dead daemon or a lost byte.
"""
import errno
import os
import shutil
import subprocess

import pytest

from ioc_e2e import MiB, NbdClient, NBD_CMD_FLAG_FUA, need, random_image, run, sha256

FALLBACK_LOG = "cannot receive in place"


def bdev_info(d, name):
    (bdev,) = [b for b in d.rpc("bdev_list") if b["name"] == name]
    return bdev


def writes_in_place(d, name):
    return bdev_info(d, name)["writes_in_place"]


def cache(path, off, length):
    """Read [off, off + length) of path, so that its pages are in the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, off)
    finally:
        os.close(fd)


def cache_every_other_mib(path):
    """Load MiB 0, 2, 4, ... of path into the page cache and evict the rest."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        os.posix_fadvise(fd, 0, size, os.POSIX_FADV_DONTNEED)
        for off in range(0, size, 2 * MiB):
            os.pread(fd, MiB, off)
    finally:
        os.close(fd)


def test_nbd_mapped_reads_and_map_off(make_iocd, tmp_path):
    img = random_image(tmp_path / "img.raw", 8 * MiB)
    data = cache(img, 0, 8 * MiB)
    d = make_iocd()
    d.file_export("m", img, read_only=True)
    d.file_export("u", img, read_only=True, map=False)
    offsets = [0, 4096, 3 * MiB + 512, 8 * MiB - 8192]
    for name in ("m", "u"):
        c = NbdClient(d.port, name)
        try:
            for off in offsets:
                assert c.read(off, 8192) == data[off:off + 8192], (name, off)
        finally:
            c.close()
    m, u = bdev_info(d, "m"), bdev_info(d, "u")
    assert m["mapped"] and m["reads_mapped"] == len(offsets), m
    assert not u["mapped"] and u["reads_mapped"] == 0, u
    d.iocctl("bdev", "create", "file", "c", str(img), "--no-map")
    assert not bdev_info(d, "c")["mapped"]


def test_nbd_write_in_place_nbdcopy_mixed_cache(make_iocd, tmp_path):
    nbdcopy = need("nbdcopy")
    src = random_image(tmp_path / "src.raw", 32 * MiB)
    vol = random_image(tmp_path / "vol.raw", 32 * MiB)  # old data, to be overwritten
    cache_every_other_mib(vol)
    d = make_iocd()
    uri = d.file_export("v", vol)
    run([nbdcopy, "--request-size=131072", str(src), uri], timeout=120)
    assert sha256(vol) == sha256(src)
    # 256 WRITEs of 128 KiB; those into the cached half went in place
    n = writes_in_place(d, "v")
    assert 0 < n < 256, f"{n} writes in place: expected about half of 256"


def test_nbd_write_in_place_simple_client_fua(make_iocd, tmp_path):
    vol = random_image(tmp_path / "vol.raw", 8 * MiB)
    cache(vol, 0, 8 * MiB)
    d = make_iocd()
    d.file_export("v", vol)
    c = NbdClient(d.port, "v")
    try:
        plain, fua = os.urandom(256 * 1024), os.urandom(128 * 1024 + 512)
        # the first payload may come in one recv with its header (then it is
        # copied from the receive buffer); after a large WRITE iocd receives
        # just the next header, and the next payload in place
        assert c.write(512, plain) == 0
        assert c.write(3 * MiB - 512, fua, flags=NBD_CMD_FLAG_FUA) == 0
        small = os.urandom(4096)  # under 32 KiB: through a buffer
        assert c.write(7 * MiB, small) == 0
        assert c.read(512, len(plain)) == plain
        assert c.read(3 * MiB - 512, len(fua)) == fua
        assert c.flush() == 0
    finally:
        c.close()
    data = vol.read_bytes()
    assert data[512:512 + len(plain)] == plain
    assert data[3 * MiB - 512:3 * MiB - 512 + len(fua)] == fua
    assert data[7 * MiB:7 * MiB + 4096] == small
    assert writes_in_place(d, "v") in (1, 2)


def test_nbd_write_in_place_fio_verify(make_iocd, tmp_path):
    fio = need("fio")
    vol = tmp_path / "v.raw"
    d = make_iocd()
    uri = d.file_export("v", vol, size="64MiB")
    # a first pass through buffers caches the file; the verified pass goes in place
    for name in ("fill", "verify"):
        p = run([fio, f"--name={name}", "--ioengine=nbd", f"--uri={uri}", "--rw=randwrite",
                 "--bs=64k", "--iodepth=8", "--size=64M", "--verify=crc32c",
                 "--verify_fatal=1", "--do_verify=1"], check=False, timeout=180)
        assert p.returncode == 0, f"fio exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        assert "verify" not in p.stderr.lower(), p.stderr
    assert writes_in_place(d, "v") >= 512, "the second pass did not write in place"


@pytest.fixture
def full_ext4(tmp_path):
    """A small ext4 file system, mounted from a file, with nothing left free.

    Yields (mountpoint, vol): vol is a 64 MiB sparse file on it whose first
    MiB holds data and the rest is a hole; mountpoint/fill takes the rest.
    """
    mkfs = need("mkfs.ext4")
    if os.geteuid() != 0:
        pytest.fail("this test mounts a file system: run it as root", pytrace=False)
    img, mnt = tmp_path / "fs.img", tmp_path / "mnt"
    mnt.mkdir()
    with open(img, "wb") as f:
        f.truncate(32 * MiB)
    run([mkfs, "-q", "-F", "-m", "0", str(img)])
    p = run(["mount", "-o", "loop", str(img), str(mnt)], check=False)
    if p.returncode != 0:
        pytest.fail(f"cannot loop-mount an ext4 image (needs loop devices): {p.stderr}",
                    pytrace=False)
    try:
        vol = mnt / "vol.raw"
        with open(vol, "wb") as f:
            f.write(os.urandom(MiB))
            f.truncate(64 * MiB)
        fd = os.open(mnt / "fill", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for chunk in (MiB, 4096):  # to the last block
                try:
                    while True:
                        os.write(fd, b"\xff" * chunk)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
            os.fsync(fd)
        finally:
            os.close(fd)
        yield mnt, vol
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        shutil.rmtree(mnt, ignore_errors=True)


def test_nbd_write_in_place_full_disk(full_ext4, make_iocd):
    # (full_ext4 first: its unmount must come after iocd has stopped)
    mnt, vol = full_ext4
    first = vol.read_bytes()[:MiB]
    d = make_iocd()
    d.file_export("v", vol)
    c = NbdClient(d.port, "v")
    try:
        # a large WRITE first, so that the next payload is received on its own
        old = first[:64 * 1024]
        assert c.write(0, old) == 0
        # into cached pages of the hole: no block for them, the store faults
        assert cache(vol, 8 * MiB, MiB) == bytes(MiB)
        assert c.write(8 * MiB, os.urandom(128 * 1024)) == errno.ENOSPC
        # the connection and the daemon go on; allocated blocks take the write in place
        new = os.urandom(128 * 1024)
        assert c.write(64 * 1024, new) == 0
        expect = old + new + first[64 * 1024 + len(new):]
        assert c.read(0, MiB) == expect
        assert c.read(8 * MiB, MiB) == bytes(MiB)
        assert c.flush() == 0
    finally:
        c.close()
    log = d.log_path.read_text(errors="replace")
    assert FALLBACK_LOG in log, d.log_tail()
    assert writes_in_place(d, "v") >= 1
    d.stop()
    assert vol.read_bytes()[:MiB] == expect
