"""Network cuts between the nexus and one replica (veth down in a network
namespace) of 2 s and of 40 s, under the verifier: no client error; the
replica is faulted, then rebuilt (partially) when the link is back, and
ends with the same content. Marked slow: about 75 s."""
import time

import pytest

from nexus_util import (VOL_SIZE, child, export_checksum_unix, need_verify, nexus,
                        verify_check, verify_counts, wait_for)
from ioc_e2e import free_port


def ns_replica(make_ns_iocd, ns, addr, port, path):
    d = make_ns_iocd(ns, "--nbd-listen", f"{addr}:{port}")
    d.rpc("pool_create", name="p", path=str(path), size=VOL_SIZE * 2 + (16 << 20))
    d.rpc("volume_create", pool="p", name="v", size=VOL_SIZE)
    d.rpc("nbd_export_add", name="v", bdev="p/v")
    return d, f"nbd://{addr}:{port}/v"


@pytest.mark.slow
def test_nexus_network_cut_2s_and_40s(make_ns_iocd, netpair, tmp_path, procs):
    verify = need_verify()
    port = free_port()
    local = [ns_replica(make_ns_iocd, netpair.a, "127.0.0.1", free_port(), tmp_path / f"l{i}")
             for i in range(2)]
    far, far_uri = ns_replica(make_ns_iocd, netpair.b, netpair.addr_b, port, tmp_path / "far")
    nx = make_ns_iocd(netpair.a, "--state-dir", str(tmp_path))
    children = [u for _, u in local] + [far_uri]
    nx.rpc("nexus_create", name="vol", children=children, generation=1, io_timeout=1)
    nx.rpc("nbd_export_add", name="vol", bdev="vol")
    uri = f"nbd+unix:///vol?socket={nx.nbd_sock}"
    state = tmp_path / "verify.state"

    for cut_s in (2, 40):
        faults = child(nx, far_uri)["faults"]
        vp = procs.start([verify, "write", uri, "--state", state, "--blocks", 2048,
                          "--seconds", cut_s + 4, "--qd", 8, "--flush-ms", 500])
        time.sleep(1)
        netpair.cut(True)
        time.sleep(cut_s)
        assert child(nx, far_uri)["state"] == "faulted"
        assert nexus(nx)["state"] == "degraded"
        netpair.cut(False)
        out, err = vp.communicate(timeout=120)
        assert vp.returncode == 0, out + err
        assert verify_counts(out.decode())["errors"] == 0
        wait_for(f"the replica to be rebuilt after a {cut_s} s cut",
                 lambda: child(nx, far_uri)["state"] == "online", timeout=60)
        c = child(nx, far_uri)
        assert c["faults"] == faults + 1, c
        assert c["rebuild"]["type"] == "partial" and c["rebuild"]["segments_total"] <= 9, c
    p, counts = verify_check(uri, state)
    assert p.returncode == 0 and counts["lost"] == 0, p.stdout + p.stderr
    # Every replica through its own unix socket (no network needed).
    sums = {export_checksum_unix(d.nbd_sock, "v", VOL_SIZE) for d in [far] + [d for d, _ in local]}
    assert len(sums) == 1, sums
