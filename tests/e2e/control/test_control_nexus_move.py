"""Nexus move through the control plane: 4 nodes (a runs the controller,
b/c/d hold the pools), a 3-replica Volume under the verifier; kill -9 the
nexus node -> the controller moves the nexus to another replica node with
generation 2, the client reconnects to the new status.uri and the verifier's
record of acknowledged writes shows nothing lost; writing on goes without
error. The old node's iocd restarts (same workdir, same NBD port): its agent
does not bring the old nexus back, its replica rejoins the new nexus
(rebuild) and the Volume is Online again; every write sent through the
generation-1 exports (the old nexus's children) is rejected with EPERM and
counted on the replica bdevs (100%), and an old nexus created by hand on the
restarted node faults without acknowledging anything.
Runtime about 25 s."""
import time

import pytest

import ioc_e2e
from cp_e2e import iocctl, phase_is, status, verifier, verify_check, wait_for, write_errors
from ioc_e2e import Iocd, RpcError, run
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
spec: {size: 64MiB, replicas: 3}
""")
    return "---\n".join(docs)


def counts(out):
    for line in out.splitlines():
        if line.startswith("write:"):
            return {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    return {}


def rejected(d, bdev):
    (b,) = d.rpc("bdev_list", name=bdev)
    return b["rejected"]


@pytest.fixture
def restarted():
    """Restart a killed Iocd in its own workdir on its old port; stopped by PID at the end."""
    started = []

    def restart(old, monkeypatch):
        d = Iocd(old.workdir, old.extra_args)
        with monkeypatch.context() as m:
            m.setattr(ioc_e2e, "free_port", lambda: old.port)
            d.start()
        started.append(d)
        return d

    yield restart
    for d in started:
        if d.alive():
            status_, killed = d.stop()
            assert status_ == 0 and not killed, d.log_tail()
        elif not d.stopped:
            pytest.fail(f"restarted iocd died during the test\n{d.log_tail()}", pytrace=False)


def test_nexus_node_killed_moves_and_old_nexus_writes_nothing(etcd, make_iocd, tmp_path, procs,
                                                              restarted, monkeypatch):
    nodes = {"a": make_iocd("--node", "a", "--etcd", etcd.url, *ISCSI_NONE, "--controller",
                            "--replica-grace", "1h")}
    for n in "bcd":
        nodes[n] = make_iocd("--node", n, "--etcd", etcd.url, *ISCSI_NONE)
    wait_for(lambda: len(etcd.range("/ioc/v1/node/")) == 4, what="nodes registered")
    iocctl(etcd, "apply", "-f", "-", input=manifest(tmp_path, "bcd"))
    st = wait_for(lambda: phase_is(etcd, "Online"), timeout=60, what="db Online")
    assert sorted(r["node"] for r in st["replicas"]) == ["b", "c", "d"]
    assert st["generation"] == 1 and st["nexusNode"] in ("b", "c", "d")
    old_node, old_uri = st["nexusNode"], st["uri"]
    gen1 = {r["node"]: r["uri"] for r in st["replicas"]}
    assert all(u.endswith("/db@gen=1") for u in gen1.values()), gen1

    state = tmp_path / "verify.state"
    vp = procs.start([verifier(), "write", old_uri, "--state", state, "--blocks", 2048,
                      "--seconds", 30, "--qd", 8, "--flush-ms", 300])
    wait_for(lambda: state.exists(), what="the verifier to start")
    time.sleep(2)  # some acknowledged writes recorded before the kill (no timing asserted)
    kill9(nodes[old_node])
    vp.communicate(timeout=60)  # its connection broke: the client moves to the new URI

    def moved():
        s = status(etcd)
        return s if s.get("generation", 0) > 1 and s.get("nexusNode") not in (None, old_node) \
            and s.get("uri") and s["uri"] != old_uri and s.get("phase") in ("Online", "Degraded") \
            else None
    st = wait_for(moved, timeout=60, what="the nexus moved with a new generation")
    assert st["generation"] == 2, st
    new_node, new_uri = st["nexusNode"], st["uri"]
    events = [e["reason"] for e in st["events"]]
    assert "NexusMoved" in events, events

    p, c = verify_check(new_uri, state)
    assert p.returncode == 0 and c["lost"] == 0 and c["written"] > 0, p.stdout + p.stderr
    p = run([verifier(), "write", new_uri, "--state", state, "--blocks", 2048, "--count", 2000,
             "--qd", 8])
    assert write_errors(p.stdout) == 0, p.stdout

    back = restarted(nodes[old_node], monkeypatch)
    assert back.uri("db@gen=2") == gen1[old_node].replace("gen=1", "gen=2")
    st = wait_for(lambda: (lambda s: s if s.get("phase") == "Online" and all(
        r["state"] == "online" for r in s["replicas"]) and len(s["replicas"]) == 3 else None)(
            status(etcd)), timeout=60, what="the old node's replica back in the new nexus")
    assert st["nexusNode"] == new_node and st["generation"] == 2 and st["uri"] == new_uri
    assert not [x for x in back.rpc("nexus_list") if x["name"] == "db"], "old nexus came back"

    # The old nexus's writes: through the generation-1 exports, every one refused and counted.
    survivors = [n for n in "bcd" if n != old_node]
    for n in survivors:
        before = rejected(nodes[n], "db.g1")
        p = run([verifier(), "write", gen1[n], "--state", tmp_path / f"old-{n}.state",
                 "--blocks", 256, "--count", 300, "--qd", 4], check=False)
        c = counts(p.stdout)
        assert c["issued"] == 300 and c["acked"] == 0 and c["errors"] == 300, p.stdout + p.stderr
        assert rejected(nodes[n], "db.g1") - before == 300
        assert rejected(nodes[n], "db.g2") == 0

    # An old nexus brought back by hand on the restarted node acknowledges nothing.
    try:
        back.rpc("nexus_create", name="db", generation=1,
                 children=[gen1[n] for n in survivors])
    except RpcError as e:
        assert "older" in e.message or "fenced" in e.message, e.message
    else:
        try:
            back.rpc("nbd_export_add", name="db-old", bdev="db")  # the old client URI's twin
            p = run([verifier(), "write", back.uri("db-old"), "--state", tmp_path / "zombie.state",
                     "--blocks", 256, "--count", 200, "--qd", 4], check=False)
            c = counts(p.stdout)
            assert c.get("acked", 0) == 0 and c.get("errors", 0) == c.get("issued", 0), \
                p.stdout + p.stderr
        except RpcError:
            pass  # the agent already took it down (not assigned here)
    wait_for(lambda: not [x for x in back.rpc("nexus_list") if x["name"] == "db"],
             what="the agent to destroy the unassigned old nexus")

    p, c = verify_check(new_uri, state)
    assert p.returncode == 0 and c["lost"] == 0, p.stdout + p.stderr
