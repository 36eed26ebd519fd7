"""A replica removed and a new one added under load: the new one gets a
full rebuild while the verifier writes; afterwards the three replicas have
the same content and nothing acknowledged is lost. The nexus's iocd runs two
reactors, so IO arrives on a reactor that does not own the nexus (forwarded
by message). Runtime about 15 s."""
import time

from nexus_util import (Replica, child, need_verify, nexus, verify_check, verify_counts,
                        wait_for)


def test_nexus_replace_replica_under_load(make_iocd, tmp_path, procs):
    verify = need_verify()
    reps = [Replica(make_iocd, tmp_path, f"r{i}").start(create=True) for i in range(4)]
    nx = make_iocd("--state-dir", str(tmp_path), "--cores", "2")
    nx.rpc("nexus_create", name="vol", children=[r.uri for r in reps[:3]], generation=1)
    nx.rpc("nbd_export_add", name="vol", bdev="vol")
    uri = nx.uri("vol")
    state = tmp_path / "verify.state"
    # Two verifiers on two connections (which land on both reactors), disjoint halves.
    vp = procs.start([verify, "write", uri, "--state", state, "--seconds", 8, "--qd", 16,
                      "--blocks", 8192])
    vp2 = procs.start([verify, "write", uri, "--state", tmp_path / "v2.state", "--seconds", 8,
                       "--qd", 16, "--offset", 32 << 20, "--blocks", 8192])
    time.sleep(2)
    nx.rpc("nexus_child_remove", name="vol", uri=reps[2].uri)
    nx.rpc("nexus_child_add", name="vol", uri=reps[3].uri)
    assert child(nx, reps[3].uri)["state"] in ("rebuilding", "online")
    wait_for("the new replica to be rebuilt",
             lambda: child(nx, reps[3].uri)["state"] == "online", timeout=60)
    for p in (vp, vp2):
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0 and verify_counts(out.decode())["errors"] == 0, out + err
    rb = child(nx, reps[3].uri)["rebuild"]
    assert rb["type"] == "full" and rb["segments_done"] == rb["segments_total"] == 64, rb
    assert nexus(nx)["state"] == "online"
    assert [c["uri"] for c in nexus(nx)["children"]].count(reps[2].uri) == 0
    for st, off in ((state, 0), (tmp_path / "v2.state", 32 << 20)):
        p, counts = verify_check(uri, st, offset=off)
        assert p.returncode == 0 and counts["lost"] == 0, p.stdout + p.stderr
    sums = {r.name: r.checksum() for r in (reps[0], reps[1], reps[3])}
    assert len(set(sums.values())) == 1, sums
