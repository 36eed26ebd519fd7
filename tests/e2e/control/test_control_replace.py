"""Replica replacement through the control plane, on loopback and with each
iocd in its own network namespace (the `topo` fixture): 4 nodes, 4 Pools
and a 3-replica Volume applied -> Online within 10 s; qemu-img and fio use
its URI. Then under the verifier, kill -9 one replica node -> Degraded with
0 client errors; after the (short) --replica-grace the controller places a
replacement on the 4th node, its agent adds it to the nexus
(nexus_child_add), the lost one is removed (nexus_child_remove) and the
rebuild runs, throttled by spec.rebuildRate so that it lasts a few seconds:
meanwhile `iocctl describe volume` draws the progress bar (0 < % < 100) and
`get -o json` carries status.replicas[].rebuildProgress. The Volume is
Online again; the verifier finds nothing lost and the three replicas'
exports (VOL@gen=1) have equal checksums.
Runtime about 35 s per topology."""
import re
import time

import pytest

from cp_e2e import (export_checksum, iocctl, phase_is, status, verifier, verify_check,
                    wait_for, write_errors)
from ioc_e2e import MiB, need, random_image, run
from test_control_volume import kill9

SIZE = 64 << 20
RATE = 8 << 20  # rebuild bytes/s: ~24 MiB allocated -> a rebuild of several seconds

pytestmark = pytest.mark.slow


def manifest(tmp_path, nodes, extra=""):
    docs = [f"""apiVersion: ioc/v1alpha1
kind: Pool
metadata: {{name: pool-{n}}}
spec: {{node: {n}, path: {tmp_path}/pool-{n}.img, size: 256MiB}}
""" for n in nodes]
    docs.append(f"""apiVersion: ioc/v1alpha1
kind: Volume
metadata: {{name: db}}
spec: {{size: 64MiB, replicas: 3, nexusNode: a{extra}}}
""")
    return "---\n".join(docs)


def start_nodes(topo, names, grace="3s"):
    nodes = {}
    for n in names:
        extra = ["--controller", "--replica-grace", grace] if n == "a" else []
        nodes[n] = topo.node(n, *extra)
    wait_for(lambda: len(topo.etcd.range("/ioc/v1/node/")) == len(names),
             what="nodes registered")
    return nodes


BAR = re.compile(r"rebuilding\s+\[[#.]{20}\]\s+(\d+)%")


def test_replica_node_killed_is_replaced_and_rebuilt(topo, tmp_path, procs):
    qemu_img, fio = need("qemu-img"), need("fio")
    etcd = topo.etcd
    nodes = start_nodes(topo, "abcd")
    t0 = time.monotonic()
    iocctl(etcd, "apply", "-f", "-", input=manifest(tmp_path, "abcd",
                                                     f", rebuildRate: {RATE}"))
    st = wait_for(lambda: phase_is(etcd, "Online"), timeout=10, what="db Online within 10 s")
    print(f"{topo.name}: Online {time.monotonic() - t0:.1f} s after apply")
    assert sorted(r["node"] for r in st["replicas"]) == ["a", "b", "c"]
    assert st["nexusNode"] == "a" and st["generation"] == 1
    uri = st["uri"]
    assert uri == nodes["a"].uri("db"), uri
    # Each replica served on its node's own address (a namespace address in netns).
    assert {r["node"]: r["uri"] for r in st["replicas"]} == {
        n: nodes[n].uri("db@gen=1") for n in "abc"}, st["replicas"]
    nx = nodes["a"].rpc("nexus_list", name="db")[0]
    assert sorted(c["uri"] for c in nx["children"]) == sorted(
        nodes[n].uri("db@gen=1") for n in "abc"), nx

    # Real clients on the volume's URI: qemu-img writes and compares 16 MiB,
    # fio writes and verifies 8 MiB further on.
    img = random_image(tmp_path / "src.raw", 16 * MiB)
    run([qemu_img, "convert", "-n", "-f", "raw", "-O", "raw", img, uri])
    run([qemu_img, "compare", "-f", "raw", "-F", "raw", img, uri])
    run([fio, "--name=v", "--ioengine=nbd", f"--uri={uri}", "--rw=randwrite", "--bs=4k",
         "--offset=32M", "--size=8M", "--iodepth=16", "--verify=crc32c", "--verify_fatal=1",
         "--do_verify=1", "--verify_state_save=0"], timeout=180)

    state = tmp_path / "verify.state"
    vp = procs.start([verifier(), "write", uri, "--state", state, "--blocks", 2048,
                      "--seconds", 14, "--qd", 8, "--flush-ms", 500])
    wait_for(lambda: state.exists(), what="the verifier to start")

    kill9(nodes["c"])
    wait_for(lambda: phase_is(etcd, "Degraded"), timeout=30, what="db Degraded")
    seen, described, reported = set(), [], []

    def replaced_online():
        s = status(etcd)
        reps = s.get("replicas", [])
        seen.update(r["state"] for r in reps)
        for r in reps:
            if r["state"] == "rebuilding" and 0 < r.get("rebuildProgress", -1) < 100:
                reported.append(r["rebuildProgress"])
                if not described:
                    out = iocctl(etcd, "describe", "volume", "db").stdout
                    m = BAR.search(out)
                    if m and 0 < int(m.group(1)) < 100:
                        described.append(out)
        nodes_now = sorted(r["node"] for r in reps)
        return s if s.get("phase") == "Online" and nodes_now == ["a", "b", "d"] else None

    st = wait_for(replaced_online, timeout=90, what="replacement on d rebuilt, db Online")
    assert "rebuilding" in seen, seen
    assert reported, "get -o json never showed rebuildProgress between 0 and 100"
    assert described, f"describe never drew a rebuild bar between 0% and 100% ({reported})"
    print(f"{topo.name}: rebuildProgress seen {reported}\n{described[0]}")
    vout, verr = vp.communicate(timeout=120)
    assert vp.returncode == 0, f"verifier: {vout.decode()} {verr.decode()}"
    assert write_errors(vout.decode()) == 0, vout.decode()

    events = [e["reason"] for e in st["events"]]
    assert "ReplicaReplaced" in events and "NodeLost" in events, events
    nx = nodes["a"].rpc("nexus_list", name="db")[0]
    assert sorted(c["state"] for c in nx["children"]) == ["online"] * 3, nx
    assert sorted(c["uri"] for c in nx["children"]) == sorted(
        nodes[n].uri("db@gen=1") for n in "abd"), nx

    p, counts = verify_check(uri, state)
    assert p.returncode == 0 and counts["lost"] == 0, p.stdout + p.stderr
    sums = {r["node"]: export_checksum(r["uri"], SIZE) for r in st["replicas"]}
    assert len(set(sums.values())) == 1, sums
    desc = iocctl(etcd, "describe", "volume", "db").stdout
    assert "ReplicaReplaced" in desc
