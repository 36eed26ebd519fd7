"""Fencing: after a new nexus (generation 2) took over the replicas, every
write of the old nexus (generation 1) is rejected, and counted; the new
nexus sees every write the old one acknowledged before. Runtime about 5 s."""
import pytest

from ioc_e2e import RpcError
from nexus_util import Replica, need_verify, nexus, verify_check, verify_counts


def replica_generation(rep, gen):
    rep.d.rpc("bdev_replica_create", name=f"v.g{gen}", base="p/v", generation=gen)
    rep.d.rpc("nbd_export_add", name=f"v@gen={gen}", bdev=f"v.g{gen}")
    return f"nbd://127.0.0.1:{rep.port}/v@gen={gen}"


def replica_bdev(rep, name):
    (b,) = rep.d.rpc("bdev_list", name=name)
    return b


def test_nexus_fencing_old_generation_rejected(make_iocd, tmp_path):
    from ioc_e2e import run
    verify = need_verify()
    reps = [Replica(make_iocd, tmp_path, f"r{i}").start(create=True) for i in range(2)]
    old = make_iocd("--state-dir", str(tmp_path / "old"))
    (tmp_path / "old").mkdir()
    old.rpc("nexus_create", name="vol", generation=1,
            children=[replica_generation(r, 1) for r in reps])
    old.rpc("nbd_export_add", name="vol", bdev="vol")
    state = tmp_path / "acked.state"
    p = run([verify, "write", old.uri("vol"), "--state", state, "--count", 3000])
    assert verify_counts(p.stdout)["errors"] == 0

    # Takeover: generation 2 on every replica, then the new nexus.
    new = make_iocd("--state-dir", str(tmp_path / "new"))
    (tmp_path / "new").mkdir()
    new.rpc("nexus_create", name="vol", generation=2,
            children=[replica_generation(r, 2) for r in reps])
    new.rpc("nbd_export_add", name="vol", bdev="vol")
    with pytest.raises(RpcError) as e:
        reps[0].d.rpc("bdev_replica_create", name="v.g1b", base="p/v", generation=1)
    assert "older" in e.value.message

    # The old nexus keeps writing: all of it is refused.
    p = run([verify, "write", old.uri("vol"), "--state", tmp_path / "old.state",
             "--count", 500, "--qd", 4], check=False)
    c = verify_counts(p.stdout)
    assert c["issued"] == 500 and c["acked"] == 0 and c["errors"] == 500, p.stdout + p.stderr
    assert nexus(old)["state"] == "faulted"
    rejected = sum(replica_bdev(r, "v.g1")["rejected"] for r in reps)
    assert rejected >= 1
    for r in reps:
        b = replica_bdev(r, "v.g2")
        assert b["rejected"] == 0 and not b["fenced"] and b["current_generation"] == 2, b
        assert replica_bdev(r, "v.g1")["fenced"]
        assert r.d.rpc("volume_attr_get", volume="p/v", key="ioc.generation") == "2"

    # The new nexus has every write the old one acknowledged, and writes on.
    p, counts = verify_check(new.uri("vol"), state)
    assert p.returncode == 0 and counts["lost"] == 0, p.stdout + p.stderr
    p = run([verify, "write", new.uri("vol"), "--state", state, "--count", 1000])
    assert verify_counts(p.stdout)["errors"] == 0
