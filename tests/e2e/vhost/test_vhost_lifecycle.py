"""vhost_blk_export_add / _list / _remove through RPC and iocctl, errors
that name the problem, and removal with a client connected. About 3 s."""
import os

import pytest

from ioc_e2e import MiB, RpcError
from vhost_util import make_image, perf, vblk_perf, vhost_file_export


def test_vhost_export_add_list_remove(iocd, tmp_path, procs):
    image = make_image(tmp_path / "img", 8 * MiB)
    sock = tmp_path / "a.sock"
    vhost_file_export(iocd, "v", image, sock, nbd=False)
    assert os.path.exists(sock)
    with pytest.raises(RpcError) as e:
        iocd.rpc("vhost_blk_export_add", socket=str(sock), bdev="v")
    assert "already exported" in str(e.value)
    with pytest.raises(RpcError) as e:
        iocd.rpc("vhost_blk_export_add", socket=str(tmp_path / "b.sock"), bdev="nope")
    assert "not found" in str(e.value)
    with pytest.raises(RpcError):
        iocd.rpc("vhost_blk_export_add", socket=str(tmp_path / "c.sock"), bdev="v",
                 num_queues=17)
    # a client connected while the export goes away: disconnected, no crash
    client = procs.start([vblk_perf(), "--socket", sock, "--rw", "randread", "--qd", "2",
                          "--runtime", "0.3", "--idle", "20"])
    import time
    time.sleep(1.0)
    assert iocd.rpc("vhost_blk_export_list")[0]["connections"] == 1
    iocd.rpc("vhost_blk_export_remove", socket=str(sock))
    assert iocd.rpc("vhost_blk_export_list") == []
    assert not os.path.exists(sock)
    with pytest.raises(RpcError) as e:
        iocd.rpc("vhost_blk_export_remove", socket=str(sock))
    assert "no such vhost export" in str(e.value)
    iocd.rpc("bdev_delete", name="v")  # the export released the bdev


def test_vhost_iocctl_commands(iocd, tmp_path):
    image = make_image(tmp_path / "img", 8 * MiB)
    iocd.rpc("bdev_file_create", name="v", path=str(image))
    sock = str(tmp_path / "x.sock")
    iocd.iocctl("vhost", "add", sock, "v", "--num-queues", "2")
    out = iocd.iocctl("vhost", "list").stdout
    assert sock in out and "v" in out
    res, _ = perf("--socket", sock, "--rw", "randread", "--qd", "2", "--runtime", "0.3")
    assert res["ios"] > 0
    iocd.iocctl("vhost", "remove", sock)
    assert sock not in iocd.iocctl("vhost", "list").stdout


def test_vhost_example_program(iocd, tmp_path):
    """examples/vblk_example.c, built against the public header, runs against iocd."""
    from ioc_e2e import BUILD, run
    example = BUILD / "tools" / "vblk_example"
    if not example.exists():
        pytest.fail(f"{example} missing: run `make build`", pytrace=False)
    image = make_image(tmp_path / "img", 8 * MiB)
    sock = tmp_path / "ex.sock"
    vhost_file_export(iocd, "v", image, sock, nbd=False)
    out = run([example, sock]).stdout
    assert "block 0 starts with 'x'" in out and "ok" in out
