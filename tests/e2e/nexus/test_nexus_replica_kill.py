"""A 3-replica nexus under the verifier and fio --verify=crc32c: kill -9 one
replica's iocd -> no client error, nexus degraded; restart it -> a partial
rebuild copying at most (dirty segments + 1) segments; afterwards every
replica has the same content and the verifier finds nothing lost.
Runtime about 25 s."""
import time

from ioc_e2e import need
from nexus_util import (Replica, child, need_verify, nexus, verify_check, verify_counts,
                        wait_for)


def test_nexus_replica_kill_partial_rebuild(make_iocd, tmp_path, procs):
    verify = need_verify()
    fio = need("fio")
    reps = [Replica(make_iocd, tmp_path, f"r{i}").start(create=True) for i in range(3)]
    nx = make_iocd("--state-dir", str(tmp_path))
    nx.rpc("nexus_create", name="vol", children=[r.uri for r in reps], generation=1)
    nx.rpc("nbd_export_add", name="vol", bdev="vol")
    uri = nx.uri("vol")
    state = tmp_path / "verify.state"

    # The verifier on the first 8 MiB, fio on 4 MiB at 32 MiB: while the
    # replica is away at most 12 of the 64 segments are written.
    vp = procs.start([verify, "write", uri, "--state", state, "--blocks", 2048,
                      "--seconds", 10, "--qd", 16, "--flush-ms", 500])
    time.sleep(2)
    reps[1].kill()
    fp = procs.start([fio, "--name=v", "--ioengine=nbd", f"--uri={uri}", "--rw=randwrite",
                      "--bs=4k", "--offset=32M", "--size=4M", "--iodepth=16",
                      "--verify=crc32c", "--verify_fatal=1", "--do_verify=1"])
    vout, verr = vp.communicate(timeout=120)
    fout, ferr = fp.communicate(timeout=180)
    assert vp.returncode == 0, f"verifier: {vout.decode()} {verr.decode()}"
    assert verify_counts(vout.decode())["errors"] == 0
    assert fp.returncode == 0, f"fio: {fout.decode()[-2000:]} {ferr.decode()[-2000:]}"

    n = nexus(nx)
    assert n["state"] == "degraded", n
    c = child(nx, reps[1].uri)
    assert c["state"] == "faulted" and c["faults"] == 1, c
    dirty = c["dirty_segments"]
    assert 0 < dirty <= 12, c

    # Back at the same URI: the nexus finds it and copies only what it missed.
    reps[1].start()
    wait_for("the returning replica to be rebuilt",
             lambda: child(nx, reps[1].uri)["state"] == "online", timeout=60)
    rb = child(nx, reps[1].uri)["rebuild"]
    assert rb["type"] == "partial", rb
    assert rb["segments_done"] == rb["segments_total"] <= dirty + 1, (rb, dirty)
    assert nexus(nx)["state"] == "online"

    p, counts = verify_check(uri, state)
    assert p.returncode == 0 and counts["lost"] == 0, p.stdout + p.stderr
    sums = {r.name: r.checksum() for r in reps}
    assert len(set(sums.values())) == 1, sums
    for r in reps:
        p, counts = verify_check(r.uri, state)
        assert p.returncode == 0 and counts["lost"] == 0, (r.name, p.stdout, p.stderr)
