"""Agent and controller end to end: etcd plus iocd nodes on loopback.

A 1-replica Volume goes Online with a URI qemu-io writes and reads; kill -9
and restart of the agent converges with the replica's identity and data
unchanged; with two controllers, killing the leader hands over leadership.
"""
import json
import subprocess

from cp_e2e import iocctl, volume, wait_for
from ioc_e2e import BUILD, qemu_io, need

ISCSI_NONE = (["--iscsi-listen", "none"]
              if "--iscsi-listen" in subprocess.run([str(BUILD / "iocd"), "--help"],
                                                    capture_output=True, text=True).stdout
              else [])


def manifest(tmp_path):
    return f"""apiVersion: ioc/v1alpha1
kind: Pool
metadata: {{name: pool-a}}
spec: {{node: a, path: {tmp_path}/pool-a.img, size: 256MiB}}
---
apiVersion: ioc/v1alpha1
kind: Volume
metadata: {{name: db}}
spec: {{size: 64MiB, replicas: 1}}
"""


def node(make_iocd, etcd, name, *extra):
    return make_iocd("--node", name, "--etcd", etcd.url, *ISCSI_NONE, *extra)


def kill9(d):
    d.proc.kill()
    d.proc.wait(10)
    d.stopped = True
    d.log.close()


def online(etcd):
    v = volume(etcd, "db")
    return v if v and v.get("status", {}).get("phase") == "Online" and v["status"].get("uri") \
        else None


def test_volume_online_io_and_agent_restart_converges(etcd, make_iocd, tmp_path):
    need("qemu-io")
    a = node(make_iocd, etcd, "a", "--controller", "--replica-grace", "1h")
    wait_for(lambda: "/ioc/v1/node/a" in etcd.range("/ioc/v1/node/"), what="node a registered")
    iocctl(etcd, "apply", "-f", "-", input=manifest(tmp_path))
    v = wait_for(lambda: online(etcd), what="volume db Online")
    st = v["status"]
    assert st["nexusNode"] == "a" and st["generation"] == 1
    assert [(r["node"], r["state"]) for r in st["replicas"]] == [("a", "online")]
    uri = st["uri"]
    assert uri == a.uri("db")
    qemu_io(uri, "write -P 0x5a 0 1M", "write -P 0xa5 32M 64k")
    before = {x["name"]: x["id"] for x in a.rpc("volume_list")}
    pool = json.loads(etcd.range("/ioc/v1/status/pool/pool-a")["/ioc/v1/status/pool/pool-a"])
    assert pool["state"] == "Online" and pool["capacity"] > 0

    kill9(a)
    b = node(make_iocd, etcd, "a", "--controller", "--replica-grace", "1h")
    v = wait_for(lambda: (lambda x: x if x and x["status"]["uri"] == b.uri("db") else None)(
        online(etcd)), timeout=60, what="volume db Online again on the restarted node")
    qemu_io(v["status"]["uri"], "read -P 0x5a 0 1M", "read -P 0xa5 32M 64k", read_only=True)
    after = {x["name"]: x["id"] for x in b.rpc("volume_list")}
    assert after == before, "the replica was recreated instead of reused"
    assert v["status"]["generation"] == 1


def test_nexus_unavailable_is_a_condition_not_a_crash(etcd, make_iocd, tmp_path):
    """Two replicas need a nexus: on a node without nexus_create, Volume status says so."""
    a = node(make_iocd, etcd, "a", "--controller")
    b = node(make_iocd, etcd, "b")
    wait_for(lambda: len(etcd.range("/ioc/v1/node/")) == 2, what="two nodes registered")
    pool_b = manifest(tmp_path).split("---\n")[0].replace("pool-a", "pool-b").replace(
        "node: a", "node: b")
    m = pool_b + "---\n" + manifest(tmp_path).replace("replicas: 1", "replicas: 2")
    iocctl(etcd, "apply", "-f", "-", input=m)

    def placed():
        v = volume(etcd, "db")
        reps = v.get("status", {}).get("replicas", []) if v else []
        return v if len(reps) == 2 and all(r["state"] == "online" for r in reps) else None
    v = wait_for(placed, timeout=60, what="two replicas online")
    assert sorted(r["node"] for r in v["status"]["replicas"]) == ["a", "b"]
    methods = a.rpc("rpc_get_methods")
    if "nexus_create" not in methods:
        v = wait_for(lambda: (lambda x: x if any(c["reason"] == "NexusUnavailable" for c in
                                                 x["status"].get("conditions", [])) else None)(
            volume(etcd, "db")), what="NexusUnavailable condition")
        assert v["status"]["phase"] == "Pending"
    else:
        v = wait_for(lambda: online(etcd), timeout=60, what="volume db Online through the nexus")
        assert v["status"]["nexusNode"] in ("a", "b")
    # Deleting through the control plane takes down the nexus and the replicas too.
    iocctl(etcd, "delete", "volume", "db")
    wait_for(lambda: not etcd.range("/ioc/v1/assign/"), what="assignments removed")
    wait_for(lambda: not etcd.range("/ioc/v1/tombstone/"), what="tombstone done")
    for d in (a, b):
        assert not [x for x in d.rpc("nbd_export_list") if x["name"].startswith("db")]
        assert not [v for v in d.rpc("volume_list") if v["name"] == "db"]
        if "nexus_list" in methods:
            assert d.rpc("nexus_list") == []
    assert a.alive() and b.alive()


def test_two_controllers_leader_killed_other_takes_over(etcd, make_iocd):
    c1 = make_iocd("--controller", "--etcd", etcd.url, *ISCSI_NONE)
    c2 = make_iocd("--controller", "--etcd", etcd.url, *ISCSI_NONE)

    def leader():
        return etcd.range("/ioc/v1/controller/").get("/ioc/v1/controller/leader")
    first = wait_for(leader, what="a leader")
    pids = {c1.pid: c1, c2.pid: c2}
    lead = next(d for pid, d in pids.items() if first.endswith(f":{pid}"))
    other = c2 if lead is c1 else c1
    kill9(lead)
    second = wait_for(lambda: (lambda v: v if v and v != first else None)(leader()),
                      timeout=30, what="the other controller to take over")
    assert second.endswith(f":{other.pid}")
