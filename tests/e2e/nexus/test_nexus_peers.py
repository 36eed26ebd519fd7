"""Children on nbdkit and qemu-storage-daemon exports, next to an iocd
replica: mirrored writes, a full rebuild onto each peer, identical content.
Runtime about 10 s."""
import shutil
import socket
import time

import pytest

from ioc_e2e import free_port
from nexus_util import (VOL_SIZE, Replica, child, export_checksum, need_verify, nexus,
                        verify_check, verify_counts, wait_for)

PEER_PACKAGES = {"nbdkit": "nbdkit", "qemu-storage-daemon": "qemu-system-common"}


def need_peer(tool):
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} not found: install the Debian package '{PEER_PACKAGES[tool]}' "
                    f"(scripts/deps.sh test does it)", pytrace=False)
    return path


def start_peer(procs, kind, path, port):
    with open(path, "wb") as f:
        f.truncate(VOL_SIZE)
    if kind == "nbdkit":
        cmd = [need_peer("nbdkit"), "-f", "-p", port, "-i", "127.0.0.1", "--exportname", "x",
               "file", path]
    else:
        cmd = [need_peer("qemu-storage-daemon"),
               "--blockdev", f"driver=file,node-name=f,filename={path}",
               "--nbd-server", f"addr.type=inet,addr.host=127.0.0.1,addr.port={port}",
               "--export", "type=nbd,id=e,node-name=f,name=x,writable=on"]
    p = procs.start(cmd)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert p.poll() is None, f"{kind} exited: {p.stderr.read().decode()}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return f"nbd://127.0.0.1:{port}/x"
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"{kind} does not listen on {port}", pytrace=False)


def test_nexus_children_on_nbdkit_and_qsd(make_iocd, tmp_path, procs):
    verify = need_verify()
    rep = Replica(make_iocd, tmp_path, "r0").start(create=True)
    ports = {"nbdkit": free_port(), "qsd": free_port()}
    peers = {"nbdkit": start_peer(procs, "nbdkit", tmp_path / "nbdkit.img", ports["nbdkit"]),
             "qsd": start_peer(procs, "qsd", tmp_path / "qsd.img", ports["qsd"])}
    nx = make_iocd("--state-dir", str(tmp_path))
    nx.rpc("nexus_create", name="vol", children=[rep.uri, peers["nbdkit"], peers["qsd"]])
    nx.rpc("nbd_export_add", name="vol", bdev="vol")
    uri = nx.uri("vol")
    state = tmp_path / "verify.state"
    p = procs.start([verify, "write", uri, "--state", state, "--seconds", 2, "--fua"])
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0 and verify_counts(out.decode())["errors"] == 0, out + err
    # Take each peer out, write on, put it back: a full rebuild onto it.
    for kind in ("nbdkit", "qsd"):
        nx.rpc("nexus_child_remove", name="vol", uri=peers[kind])
        p = procs.start([verify, "write", uri, "--state", state, "--count", 3000])
        assert p.wait(60) == 0
        nx.rpc("nexus_child_add", name="vol", uri=peers[kind])
        wait_for(f"the {kind} child to be rebuilt",
                 lambda: child(nx, peers[kind])["state"] == "online", timeout=60)
    assert nexus(nx)["state"] == "online"
    p, counts = verify_check(uri, state)
    assert p.returncode == 0 and counts["lost"] == 0, p.stdout + p.stderr
    sums = {"iocd": rep.checksum(),
            "nbdkit": export_checksum(ports["nbdkit"], "x", VOL_SIZE),
            "qsd": export_checksum(ports["qsd"], "x", VOL_SIZE)}
    assert len(set(sums.values())) == 1, sums
