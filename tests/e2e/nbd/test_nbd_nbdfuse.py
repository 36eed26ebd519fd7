"""nbdfuse: the export as a file in a FUSE mount; dd in, cmp out."""
import os
import time

import pytest

from ioc_e2e import MiB, need, random_image, run, sha256


@pytest.fixture
def fuse_mount(tmp_path, procs):
    """mount(uri) -> path of the file; unmounted and nbdfuse stopped by PID at the end."""
    mounts = []

    def mount(uri, name="disk"):
        nbdfuse = need("nbdfuse")
        need("fusermount3")
        if not os.path.exists("/dev/fuse"):
            pytest.fail("/dev/fuse missing: nbdfuse needs the fuse kernel module")
        mp = tmp_path / f"mnt{len(mounts)}"
        mp.mkdir()
        pidfile = tmp_path / f"nbdfuse{len(mounts)}.pid"
        p = procs.start([nbdfuse, "-P", pidfile, f"{mp}/{name}", uri])
        mounts.append(mp)
        deadline = time.monotonic() + 15
        while not pidfile.exists() or not os.path.ismount(mp):
            if p.poll() is not None:
                pytest.fail(f"nbdfuse exited {p.returncode}: {p.stderr.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail("nbdfuse did not mount within 15 s")
            time.sleep(0.05)
        return mp / name

    yield mount
    for mp in mounts:
        if os.path.ismount(mp):
            run([need("fusermount3"), "-u", mp], check=False, timeout=30)
    # procs stops nbdfuse by PID after this


def test_nbd_nbdfuse_dd_cmp(iocd, tmp_path, fuse_mount):
    size = 32 * MiB
    uri = iocd.file_export("v", tmp_path / "v.raw", size=size)
    disk = fuse_mount(uri)
    assert disk.stat().st_size == size
    src = random_image(tmp_path / "src.raw", size)
    run(["dd", f"if={src}", f"of={disk}", "bs=1M", "conv=notrunc,fsync"], timeout=120)
    run(["cmp", src, disk], timeout=60)
    # a small write in the middle (block aligned: iocd advertises a 512 B
    # minimum block size and nbdfuse does no read-modify-write)
    patch = b"hello, ioc! " * 1024
    with open(disk, "r+b") as f:
        f.seek(5 * MiB + 4096)
        f.write(patch)
        f.flush()
        os.fsync(f.fileno())
    expect = bytearray(src.read_bytes())
    expect[5 * MiB + 4096:5 * MiB + 4096 + len(patch)] = patch
    # what iocd stored, read through a different client
    out = tmp_path / "out.raw"
    out.touch()
    run([need("nbdcopy"), uri, out])
    assert out.read_bytes() == bytes(expect)
    assert sha256(tmp_path / "v.raw") == sha256(out)
