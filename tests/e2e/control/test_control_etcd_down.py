"""Nexus membership in etcd (iocd --etcd): with every child healthy, IO does
not wait on etcd (etcd stopped, 60 s of verifier writes as the issue asks:
0 errors, every write acknowledged, etcd still unreachable at the end);
with etcd stopped and a replica killed, the acks that need the membership
change wait (ack_waits counts them) until etcd is back, then IO converges:
0 client errors, 0 lost, the record in etcd shows the child faulted.
Runtime about 90 s."""
import json
import time

from cp_e2e import phase_is, verifier, verify_check, wait_for, write_errors, iocctl
from test_control_replace import manifest
from test_control_volume import kill9


def write_counts(out):
    for line in out.splitlines():
        if line.startswith("write:"):
            return {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    return {}


def record(etcd):
    recs = etcd.range("/ioc/v1/nexus/db/")
    return json.loads(recs[max(recs)]) if recs else None


def test_etcd_down_io_continues_and_membership_waits(etcd, make_iocd, tmp_path, procs):
    nodes = {}
    for n in "abc":
        extra = ["--controller", "--replica-grace", "1h"] if n == "a" else []
        (tmp_path / n).mkdir(exist_ok=True)
        nodes[n] = make_iocd("--node", n, "--etcd", etcd.url, "--state-dir", str(tmp_path / n),
                             *extra)
    wait_for(lambda: len(etcd.range("/ioc/v1/node/")) == 3, what="nodes registered")
    iocctl(etcd, "apply", "-f", "-", input=manifest(tmp_path, "abc"))
    st = wait_for(lambda: phase_is(etcd, "Online"), timeout=60, what="db Online")
    uri = st["uri"]
    assert nodes["a"].rpc("nexus_list", name="db")[0]["durable_state"] is True
    assert record(etcd)["generation"] == 1

    state = tmp_path / "verify.state"
    etcd.stop()
    p = procs.start([verifier(), "write", uri, "--state", state, "--blocks", 2048,
                     "--seconds", 60, "--qd", 8, "--flush-ms", 500])
    out, err = p.communicate(timeout=180)
    assert p.returncode == 0 and write_errors(out.decode()) == 0, out.decode() + err.decode()
    c = write_counts(out.decode())
    assert c["acked"] == c["issued"] > 0, out.decode()
    try:
        etcd.range("/")
        raise AssertionError("etcd answered: it was not down")
    except OSError:
        pass

    waits0 = nodes["a"].rpc("nexus_list", name="db")[0]["stats"]["ack_waits"]
    p = procs.start([verifier(), "write", uri, "--state", state, "--blocks", 2048,
                     "--seconds", 10, "--qd", 8])
    time.sleep(1)
    kill9(nodes["c"])
    wait_for(lambda: nodes["a"].rpc("nexus_list", name="db")[0]["stats"]["ack_waits"] > waits0,
             timeout=60, what="acks waiting for the membership record")
    time.sleep(3)
    assert p.poll() is None, "the writer finished while the membership change was unrecorded"
    etcd.start(same_ports=True)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0 and write_errors(out.decode()) == 0, out.decode() + err.decode()
    rec = wait_for(lambda: record(etcd), what="the record")
    states = sorted(c["state"] for c in rec["children"])
    assert states == ["faulted", "online", "online"], rec
    pc, counts = verify_check(uri, state)
    assert pc.returncode == 0 and counts["lost"] == 0, pc.stdout + pc.stderr
