"""Replica replacement through the control plane: 4 nodes, a 3-replica
Volume under the verifier; kill -9 one replica node -> Degraded with 0
client errors; after the (short) --replica-grace the controller places a
replacement on the 4th node, its agent adds it to the nexus
(nexus_child_add), the lost one is removed (nexus_child_remove), the rebuild
runs and the Volume is Online again; the verifier finds nothing lost and the
three replicas' exports (VOL@gen=1) have equal checksums.
Runtime about 30 s."""
from cp_e2e import (export_checksum, iocctl, phase_is, status, verifier, verify_check,
                    wait_for, write_errors)
from test_control_volume import ISCSI_NONE, kill9

SIZE = 64 << 20


def manifest(tmp_path, nodes):
    docs = [f"""apiVersion: ioc/v1alpha1
kind: Pool
metadata: {{name: pool-{n}}}
spec: {{node: {n}, path: {tmp_path}/pool-{n}.img, size: 256MiB}}
""" for n in nodes]
    docs.append("""apiVersion: ioc/v1alpha1
kind: Volume
metadata: {name: db}
spec: {size: 64MiB, replicas: 3, nexusNode: a}
""")
    return "---\n".join(docs)


def start_nodes(make_iocd, etcd, names, grace="3s"):
    nodes = {}
    for n in names:
        extra = ["--controller", "--replica-grace", grace] if n == "a" else []
        nodes[n] = make_iocd("--node", n, "--etcd", etcd.url, *ISCSI_NONE, *extra)
    wait_for(lambda: len(etcd.range("/ioc/v1/node/")) == len(names), what="nodes registered")
    return nodes


def test_replica_node_killed_is_replaced_and_rebuilt(etcd, make_iocd, tmp_path, procs):
    nodes = start_nodes(make_iocd, etcd, "abcd")
    iocctl(etcd, "apply", "-f", "-", input=manifest(tmp_path, "abcd"))
    st = wait_for(lambda: phase_is(etcd, "Online"), timeout=60, what="db Online")
    assert sorted(r["node"] for r in st["replicas"]) == ["a", "b", "c"]
    assert st["nexusNode"] == "a" and st["generation"] == 1
    uri = st["uri"]
    state = tmp_path / "verify.state"
    vp = procs.start([verifier(), "write", uri, "--state", state, "--blocks", 2048,
                      "--seconds", 14, "--qd", 8, "--flush-ms", 500])
    wait_for(lambda: state.exists(), what="the verifier to start")

    kill9(nodes["c"])
    wait_for(lambda: phase_is(etcd, "Degraded"), timeout=30, what="db Degraded")
    seen = set()

    def replaced_online():
        s = status(etcd)
        seen.update(r["state"] for r in s.get("replicas", []))
        nodes_now = sorted(r["node"] for r in s.get("replicas", []))
        return s if s.get("phase") == "Online" and nodes_now == ["a", "b", "d"] else None

    st = wait_for(replaced_online, timeout=90, what="replacement on d rebuilt, db Online")
    vout, verr = vp.communicate(timeout=120)
    assert vp.returncode == 0, f"verifier: {vout.decode()} {verr.decode()}"
    assert write_errors(vout.decode()) == 0, vout.decode()

    events = [e["reason"] for e in st["events"]]
    assert "ReplicaReplaced" in events and "NodeLost" in events, events
    nx = nodes["a"].rpc("nexus_list", name="db")[0]
    assert sorted(c["state"] for c in nx["children"]) == ["online"] * 3, nx
    assert not any(f"127.0.0.1:{nodes['c'].port}/" in c["uri"] for c in nx["children"]), nx

    p, counts = verify_check(uri, state)
    assert p.returncode == 0 and counts["lost"] == 0, p.stdout + p.stderr
    sums = {r["node"]: export_checksum(r["uri"], SIZE) for r in st["replicas"]}
    assert len(set(sums.values())) == 1, sums
    desc = iocctl(etcd, "describe", "volume", "db").stdout
    assert "ReplicaReplaced" in desc
