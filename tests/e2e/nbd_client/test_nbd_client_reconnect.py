"""Reconnect and io_timeout: the server is killed with SIGKILL during IO and
comes back (IO resumes without error), or stays away longer than io_timeout
(IO fails within about io_timeout and iocd keeps running)."""
import time

import pytest

import ioc_e2e

from ioc_e2e import MiB, need, run, qemu_io
from nbdc_util import client_info, create_client, make_image, wait_state


def restart_iocd_on_port(make_iocd, port):
    """Start another iocd whose NBD port is `port` (where a killed one listened)."""
    saved = ioc_e2e.free_port
    ioc_e2e.free_port = lambda: port
    try:
        return make_iocd()
    finally:
        ioc_e2e.free_port = saved


def start_qemu_io(procs, uri, *cmds):
    args = [need("qemu-io"), "-f", "raw", uri]
    for c in cmds:
        args += ["-c", c]
    return procs.start(args, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["nbdkit", "qemu-storage-daemon", "iocd"])
def test_nbd_client_server_killed_and_back(iocd, make_iocd, nbd_server, procs, tmp_path, kind):
    image = make_image(tmp_path / "s.img")
    if kind == "iocd":
        b = make_iocd()
        b.file_export("x", image)
        server_uri = b.uri("x")
    else:
        srv = nbd_server(kind, image)
        server_uri = srv.uri
    uri = create_client(iocd, "r", server_uri, io_timeout=20)
    cmds = [f"write -P 0x{(i % 200) + 1:02x} {i}M 1M" for i in range(48)]
    cmds += [f"read -P 0x{(i % 200) + 1:02x} {i}M 1M" for i in range(48)]
    p = start_qemu_io(procs, uri, *cmds)
    time.sleep(0.3)
    if kind == "iocd":
        b.proc.kill()          # SIGKILL by PID
        b.proc.wait(10)
        b.stopped = True
        time.sleep(1.0)
        restart_iocd_on_port(make_iocd, b.port).file_export("x", image)
    else:
        srv.kill()
        time.sleep(1.0)
        srv.start()
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0 and "failed" not in (out + err).lower(), out + err
    info = wait_state(iocd, "r", "connected")
    assert info["reconnects"] >= 1 and info["timeouts"] == 0
    qemu_io(uri, *[f"read -P 0x{(i % 200) + 1:02x} {i}M 1M" for i in range(0, 48, 7)])
    run([need("qemu-img"), "compare", "-f", "raw", "-F", "raw", uri, str(image)])


@pytest.mark.slow
def test_nbd_client_server_gone_past_io_timeout(iocd, nbd_server, tmp_path):
    image = make_image(tmp_path / "s.img", 16 * MiB)
    srv = nbd_server("nbdkit", image)
    uri = create_client(iocd, "r", srv.uri, io_timeout=3)
    qemu_io(uri, "write -P 0x42 0 1M")
    srv.kill()
    t0 = time.monotonic()
    p = qemu_io(uri, "read -P 0x42 0 1M", check=False, timeout=60)
    elapsed = time.monotonic() - t0
    out = p.stdout + p.stderr
    assert "failed" in out.lower() or p.returncode != 0, out
    assert 2.0 <= elapsed <= 8.0, f"failed after {elapsed:.1f}s, io_timeout 3s: {out}"
    assert iocd.alive()
    info = client_info(iocd, "r")
    assert info["state"] == "reconnecting" and info["timeouts"] >= 1
    # when the server returns, the bdev reconnects by itself and IO works again
    srv.start()
    wait_state(iocd, "r", "connected")
    qemu_io(uri, "read -P 0x42 0 1M")
    # and delete works in either state
    iocd.rpc("nbd_export_remove", name="r")
    iocd.rpc("bdev_delete", name="r")


@pytest.mark.slow
def test_nbd_client_delete_while_reconnecting(iocd, nbd_server, tmp_path):
    image = make_image(tmp_path / "s.img", 16 * MiB)
    srv = nbd_server("nbdkit", image)
    create_client(iocd, "r", srv.uri, io_timeout=3, export=False)
    srv.kill()
    wait_state(iocd, "r", "reconnecting")
    t0 = time.monotonic()
    iocd.rpc("bdev_delete", name="r")
    assert time.monotonic() - t0 < 8
    assert iocd.rpc("bdev_list") == []
