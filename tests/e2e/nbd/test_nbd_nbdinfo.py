"""nbdinfo: export flags, size, meta contexts, the export list, and --map."""
import json
import os

from ioc_e2e import MiB, need, qemu_io, run


def info(uri, *opts):
    p = run([need("nbdinfo"), "--json", *opts, uri])
    return json.loads(p.stdout)


def test_nbd_nbdinfo_flags(iocd, tmp_path):
    iocd.malloc_export("m", size="64MiB")
    iocd.file_export("f", tmp_path / "f.raw", size="20MiB")
    for uri, size in ((iocd.uri("m"), 64 * MiB), (iocd.uri("f"), 20 * MiB),
                      (iocd.uri("f", unix=True), 20 * MiB)):
        j = info(uri)
        assert j["protocol"] == "newstyle-fixed"
        assert j["structured"] is True, j
        (e,) = j["exports"]
        for flag in ("can_flush", "can_fua", "can_trim", "can_zero", "can_multi_conn"):
            assert e.get(flag) is True, f"{uri}: {flag} is {e.get(flag)}"
        assert e["is_read_only"] is False
        assert "base:allocation" in e["contexts"], e
        assert e["export-size"] == size, e
        assert e["block_size_minimum"] <= 512 and e["block_size_maximum"] >= 1 * MiB, e
    # --size and --can agree
    p = run([need("nbdinfo"), "--size", iocd.uri("m")])
    assert int(p.stdout) == 64 * MiB
    run([need("nbdinfo"), "--can", "multi-conn", iocd.uri("m")])


def test_nbd_nbdinfo_read_only(iocd):
    iocd.malloc_export("ro", size="8MiB", read_only=True)
    (e,) = info(iocd.uri("ro"))["exports"]
    assert e["is_read_only"] is True
    p = run([need("nbdinfo"), "--can", "write", iocd.uri("ro")], check=False)
    assert p.returncode != 0, "nbdinfo --can write says a read-only export is writable"
    run([need("nbdinfo"), "--is", "read-only", iocd.uri("ro")])


def test_nbd_nbdinfo_list(iocd, tmp_path):
    names = ["alpha", "beta", "gamma-3"]
    for i, n in enumerate(names):
        iocd.malloc_export(n, size=f"{i + 1}MiB")
    j = info(f"nbd://127.0.0.1:{iocd.port}", "--list")
    got = {e["export-name"]: e for e in j["exports"]}
    assert set(got) == set(names), got.keys()
    for i, n in enumerate(names):
        assert got[n]["export-size"] == (i + 1) * MiB
    # a removed export disappears from the list and cannot be opened
    iocd.rpc("nbd_export_remove", name="beta")
    j = info(f"nbd://127.0.0.1:{iocd.port}", "--list")
    assert {e["export-name"] for e in j["exports"]} == {"alpha", "gamma-3"}
    p = run([need("nbdinfo"), iocd.uri("beta")], check=False)
    assert p.returncode != 0
    p = run([need("nbdinfo"), iocd.uri("nosuch")], check=False)
    assert p.returncode != 0


def extents(uri):
    """nbdinfo --map as a list of (offset, length, type)."""
    p = run([need("nbdinfo"), "--map", "--json", uri])
    return [(e["offset"], e["length"], e["type"]) for e in json.loads(p.stdout)]


def type_at(ext, off):
    for o, n, t in ext:
        if o <= off < o + n:
            return t
    raise AssertionError(f"offset {off} not covered by the map {ext}")


def check_covers(ext, size):
    pos = 0
    for o, n, _ in ext:
        assert o == pos, f"map has a gap or overlap at {pos}: {ext}"
        pos += n
    assert pos == size, f"map covers {pos} of {size} bytes: {ext}"


def test_nbd_nbdinfo_map_sparse_and_trim(iocd, tmp_path):
    size = 16 * MiB
    path = tmp_path / "sparse.raw"
    with open(path, "wb") as f:
        f.truncate(size)
        f.seek(4 * MiB)
        f.write(os.urandom(1 * MiB))
        f.seek(9 * MiB)
        f.write(os.urandom(2 * MiB))
    uri = iocd.file_export("s", path)

    ext = extents(uri)
    check_covers(ext, size)
    for off in (0, 3 * MiB, 5 * MiB + 4096, 8 * MiB, 11 * MiB, size - 1):
        assert type_at(ext, off) & 1, f"hole at {off} not reported: {ext}"
    for off in (4 * MiB, 5 * MiB - 1, 9 * MiB, 11 * MiB - 1):
        assert type_at(ext, off) & 1 == 0, f"data at {off} reported as hole: {ext}"

    # writes through NBD become data, TRIM of written data becomes a hole
    qemu_io(uri, "write -P 0x61 12M 1M")
    ext = extents(uri)
    assert type_at(ext, 12 * MiB) & 1 == 0, ext
    blocks_before = os.stat(path).st_blocks
    qemu_io(uri, "discard 9M 2M", "discard 12M 1M")
    ext = extents(uri)
    check_covers(ext, size)
    for off in (9 * MiB, 10 * MiB + 12345, 12 * MiB, 13 * MiB - 1):
        assert type_at(ext, off) & 1, f"no hole at {off} after TRIM: {ext}"
    assert type_at(ext, 4 * MiB) & 1 == 0, f"untrimmed data became a hole: {ext}"
    assert os.stat(path).st_blocks < blocks_before - (2 * MiB // 512), \
        "TRIM did not free space in the backing file"
    # a hole reads as zeroes
    qemu_io(uri, "read -P 0 9M 2M", "read -P 0 12M 1M")


def test_nbd_nbdinfo_map_malloc_zero(iocd):
    """Written data on a malloc bdev is reported as data."""
    uri = iocd.malloc_export("m", size="8MiB")
    qemu_io(uri, "write -P 0x33 0 8M")
    ext = extents(uri)
    check_covers(ext, 8 * MiB)
    assert type_at(ext, 1 * MiB) == 0, ext
