"""Large READs of a buffered file served by splice (nbd_conn.c
req_reply_by_splice, target_stream.c conn_splice): reads of 64 KiB and more
whose pages are all in the page cache go from the page cache to the socket
without a read into iocd's memory; the rest are read as before. These tests
mix both kinds in one transfer (every other MiB dropped from the cache),
with structured replies (nbdcopy, fio) and simple ones (our minimal client),
and check every byte, including bytes written through NBD just before.
"""
import os

from ioc_e2e import MiB, NbdClient, need, random_image, run, sha256

SPLICE_LOG = "file data goes out by splice"


def drop_every_other_mib(path):
    """Evict MiB 1, 3, 5, ... of path from the page cache; the rest stays cached."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        for off in range(0, size, MiB):  # load it all
            os.pread(fd, MiB, off)
        for off in range(MiB, size, 2 * MiB):
            os.posix_fadvise(fd, off, MiB, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def test_nbd_splice_nbdcopy_mixed_cache(make_iocd, tmp_path):
    nbdcopy = need("nbdcopy")
    img = random_image(tmp_path / "img.raw", 32 * MiB)
    drop_every_other_mib(img)
    d = make_iocd("--debug", "nbd")
    uri = d.file_export("v", img, read_only=True)
    out = tmp_path / "out.raw"
    run([nbdcopy, "--request-size=131072", uri, str(out)], timeout=120)
    assert sha256(out) == sha256(img)
    assert SPLICE_LOG in d.log_path.read_text(errors="replace"), "no reply went out by splice"


def test_nbd_splice_simple_replies(make_iocd, tmp_path):
    img = random_image(tmp_path / "img.raw", 8 * MiB)
    drop_every_other_mib(img)
    data = img.read_bytes()
    d = make_iocd("--debug", "nbd")
    d.file_export("v", img)
    c = NbdClient(d.port, "v")
    try:
        # cached, uncached and straddling ranges; sizes around the 64 KiB threshold
        for off, length in [(0, 64 * 1024), (512, 128 * 1024), (MiB - 4096, 256 * 1024),
                            (3 * MiB + 1536, MiB), (5 * MiB, 2 * MiB), (4096, 65536 - 512)]:
            assert c.read(off, length) == data[off:off + length], (off, length)
        # a write through NBD, then the same range read back (cached now: spliced)
        new = os.urandom(256 * 1024)
        assert c.write(2 * MiB + 512, new) == 0
        assert c.read(2 * MiB, 512 * 1024) == (data[2 * MiB:2 * MiB + 512] + new
                                              + data[2 * MiB + 512 + len(new):
                                                     2 * MiB + 512 * 1024])
    finally:
        c.close()
    assert SPLICE_LOG in d.log_path.read_text(errors="replace"), "no reply went out by splice"


def test_nbd_splice_fio_write_then_verify(make_iocd, tmp_path):
    fio = need("fio")
    d = make_iocd()
    uri = d.file_export("v", tmp_path / "v.raw", size="64MiB")
    p = run([fio, "--name=splice", "--ioengine=nbd", f"--uri={uri}", "--rw=write",
             "--bs=128k", "--iodepth=8", "--size=64M", "--verify=crc32c", "--verify_fatal=1",
             "--do_verify=1"], check=False, timeout=180)
    assert p.returncode == 0, f"fio exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    assert "verify" not in p.stderr.lower(), p.stderr
