"""All replicas killed: the client gets errors within io_timeout (no hang)
and the nexus is faulted; the documented recovery (recreate the nexus from
its record, which names the last in-sync replica) brings back every
acknowledged write. Runtime about 20 s."""
import time

from nexus_util import (Replica, child, need_verify, nexus, verify_check, verify_counts,
                        wait_for)


def test_nexus_all_replicas_killed_recovery(make_iocd, tmp_path, procs):
    verify = need_verify()
    reps = [Replica(make_iocd, tmp_path, f"r{i}").start(create=True) for i in range(2)]
    nx = make_iocd("--state-dir", str(tmp_path))
    nx.rpc("nexus_create", name="vol", children=[r.uri for r in reps], generation=1,
           io_timeout=2)
    nx.rpc("nbd_export_add", name="vol", bdev="vol")
    uri = nx.uri("vol")
    state = tmp_path / "verify.state"
    # FUA: "acknowledged" must mean durable when every replica crashes.
    vp = procs.start([verify, "write", uri, "--state", state, "--seconds", 30, "--qd", 8,
                      "--fua"])
    time.sleep(2)
    reps[0].kill()
    time.sleep(1)
    reps[1].kill()
    # io_timeout is 2 s: the nexus gives up after a few of them (the bound here only
    # catches a hang; no timing is asserted).
    wait_for("the nexus to fault", lambda: nexus(nx)["state"] == "faulted", timeout=60)
    vp.terminate()  # SIGTERM: the verifier stops and saves what was acknowledged
    out, err = vp.communicate(timeout=30)
    c = verify_counts(out.decode())
    assert c["errors"] > 0 and c["acked"] > 0, out + err
    last = [ch for ch in nexus(nx)["children"] if ch["last_in_sync"]]
    assert [ch["uri"] for ch in last] == [reps[1].uri], nexus(nx)

    # Recovery: replicas back, the nexus recreated from its record.
    for r in reps:
        r.start()
    nx.rpc("nbd_export_remove", name="vol")
    nx.rpc("nexus_destroy", name="vol", purge=False)
    nx.rpc("nexus_create", name="vol", children=[r.uri for r in reps], generation=1,
           io_timeout=2)
    nx.rpc("nbd_export_add", name="vol", bdev="vol")
    wait_for("both replicas online",
             lambda: all(ch["state"] == "online" for ch in nexus(nx)["children"]), timeout=60)
    # The last in-sync replica came back as is; the other was rebuilt from it.
    assert child(nx, reps[1].uri)["rebuild"] is None
    assert child(nx, reps[0].uri)["rebuild"]["segments_done"] > 0
    p, counts = verify_check(uri, state)
    assert p.returncode == 0 and counts["lost"] == 0, p.stdout + p.stderr
    assert reps[0].checksum() == reps[1].checksum()
