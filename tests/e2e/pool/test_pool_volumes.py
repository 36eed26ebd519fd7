"""Pools over NBD: snapshots against a copy, holes in the map, ENOSPC, restarts."""
import json
import signal

from ioc_e2e import MiB, need, qemu_io, run


def make_pool(iocd, tmp_path, size="64MiB", vol_size="32MiB", name="p"):
    img = tmp_path / f"{name}.img"
    iocd.rpc("pool_create", name=name, path=str(img), size=size, cluster_size=64 * 1024)
    iocd.rpc("volume_create", pool=name, name="v", size=vol_size)
    iocd.rpc("nbd_export_add", name="v", bdev=f"{name}/v")
    return img, iocd.uri("v")


def test_pool_snapshot_matches_copy_while_rewritten(iocd, tmp_path):
    _, uri = make_pool(iocd, tmp_path)
    qemu_io(uri, "write -P 0xa1 0 4M", "write -P 0xb2 6M 1M", "flush")
    copy = tmp_path / "at-snapshot.raw"
    run([need("qemu-img"), "convert", "-f", "raw", "-O", "raw", uri, str(copy)])
    iocd.rpc("volume_snapshot", volume="p/v", name="s1")
    qemu_io(uri, "write -P 0xc3 1M 3M", "write -P 0xd4 20M 1M", "flush")
    iocd.rpc("nbd_export_add", name="s1", bdev="p/s1", read_only=True)
    run([need("qemu-img"), "compare", "-f", "raw", "-F", "raw", str(copy), iocd.uri("s1")])
    qemu_io(uri, "read -P 0xa1 0 1M", "read -P 0xc3 1M 3M", "read -P 0xd4 20M 1M")


def test_pool_map_shows_holes(iocd, tmp_path):
    _, uri = make_pool(iocd, tmp_path)
    qemu_io(uri, "write -P 0x11 1M 128k")
    out = run([need("nbdinfo"), "--map", "--json", uri]).stdout
    ext = json.loads(out)
    data = [(e["offset"], e["length"]) for e in ext if not e["type"] & 1]
    assert data == [(1 * MiB, 128 * 1024)], ext
    qemu_io(uri, "discard 1M 128k")
    ext = json.loads(run([need("nbdinfo"), "--map", "--json", uri]).stdout)
    assert all(e["type"] & 1 for e in ext), ext


def test_pool_enospc_reaches_client_and_recovers(iocd, tmp_path):
    _, uri = make_pool(iocd, tmp_path, size="8MiB", vol_size="64MiB")
    p = qemu_io(uri, "write -P 0x22 0 16M", check=False)
    assert "No space left on device" in p.stdout + p.stderr
    qemu_io(uri, "read -P 0x22 0 1M")
    qemu_io(uri, "discard 0 4M", "write -P 0x33 40M 1M", "read -P 0x33 40M 1M")


def test_pool_restart_keeps_data(make_iocd, tmp_path):
    d = make_iocd()
    img, uri = make_pool(d, tmp_path)
    qemu_io(uri, "write -P 0x44 0 2M", "flush")
    d.rpc("volume_snapshot", volume="p/v", name="s")
    qemu_io(uri, "write -P 0x55 512k 64k", "flush")
    d.proc.send_signal(signal.SIGKILL)          # crash right after a flush
    d.proc.wait(10)
    d.stop()
    d2 = make_iocd("--pool", str(img))
    d2.rpc("nbd_export_add", name="v", bdev="p/v")
    d2.rpc("nbd_export_add", name="s", bdev="p/s")
    qemu_io(d2.uri("v"), "read -P 0x44 0 512k", "read -P 0x55 512k 64k",
            "read -P 0x44 576k 1472k")
    qemu_io(d2.uri("s"), "read -P 0x44 0 2M", read_only=True)
    d2.rpc("nbd_export_remove", name="v")
    d2.rpc("nbd_export_remove", name="s")
    status, killed = d2.stop()                 # SIGTERM: clean export
    assert status == 0 and not killed
    p = run([str(d2.iocctl_bin), "pool", "check", str(img)])
    assert "clean" in p.stdout


def test_pool_exported_cleanly_at_shutdown_under_a_nexus(make_iocd, tmp_path):
    """SIGTERM with a nexus over a replica bdev over a pool volume: the stacked
    bdevs go first, so the pool is exported (committed and closed), not left
    "in use"; what was written reads back after a restart."""
    iocd = make_iocd()
    img, _ = make_pool(iocd, tmp_path)
    iocd.rpc("nbd_export_remove", name="v")
    iocd.rpc("bdev_replica_create", name="v.g1", base="p/v", generation=1)
    iocd.rpc("nexus_create", name="nx", children=["v.g1"], generation=1)
    iocd.rpc("nbd_export_add", name="nx", bdev="nx")
    qemu_io(iocd.uri("nx"), "write -P 0x5e 3M 64k", "write -P 0x6f 5M 64k")
    status, killed = iocd.stop()
    log = iocd.log_path.read_text(errors="replace")
    assert status == 0 and not killed, log[-2000:]
    assert "pool p: exported" in log, log[-2000:]
    assert "still in use at shutdown" not in log, log[-2000:]
    p = run([str(iocd.iocctl_bin), "pool", "check", str(img)], check=False)
    assert p.returncode == 0 and "clean" in p.stdout, p.stdout + p.stderr
    again = make_iocd("--pool", str(img))
    again.rpc("nbd_export_add", name="v", bdev="p/v")
    qemu_io(again.uri("v"), "read -P 0x5e 3M 64k", "read -P 0x6f 5M 64k", read_only=True)
