"""Crash-consistent Snapshots of a replicated volume (issue 6), on loopback.

qemu-io writes pattern A through the volume's URI; a Snapshot is applied
(the nexus node's agent quiesces the nexus, every online replica takes the
pool snapshot db:s1, the nexus resumes); qemu-io writes pattern B. The
snapshot, exported read-only by hand from one replica node
(nbd_export_add on that node's socket), still reads A (qemu-io read -P
and qemu-img compare against an image of A); every replica's snapshot has
the same checksum; the volume reads B. `iocctl get snapshots -w` printed
the header once and the s1 row again when it became ready.

Degraded: with one child faulted in the nexus, a second Snapshot is taken
on the two healthy replicas only, and its status marks the third `absent`
(it does not hold it, also after it was rebuilt). Deleting a Volume with
Snapshots is refused; `delete snapshot` removes the pool snapshots (and
the hand-made export) everywhere, then the Volume goes and the pools'
`used` is back where it started.
Runtime about 25 s."""
import json
import re
import time

from cp_e2e import export_checksum, iocctl, phase_is, status, wait_for
from ioc_e2e import BUILD, MiB, need, qemu_io, run
from test_control_delete import holds_nothing, online_volume, pools_used, records

SIZE = 64 << 20


def snapshot(etcd, name):
    r = iocctl(etcd, "get", "snapshot", name, "-o", "json", check=False)
    return json.loads(r.stdout) if r.returncode == 0 else None


def ready(etcd, name):
    s = snapshot(etcd, name)
    return s if s and s.get("status", {}).get("ready") else None


def snap_manifest(name):
    return f"""apiVersion: ioc/v1alpha1
kind: Snapshot
metadata: {{name: {name}}}
spec: {{volume: db}}
"""


def test_snapshot_crash_consistent_and_deleted(loop, tmp_path, procs):
    qemu_img = need("qemu-img")
    etcd = loop.etcd
    nodes, base, st = online_volume(loop, tmp_path)
    uri = st["uri"]
    qemu_io(uri, "write -P 0xaa 0 4M", "write -P 0xa1 40M 1M")

    watch = procs.start([BUILD / "iocctl", "--etcd", etcd.url, "get", "snapshots", "-w"])
    time.sleep(0.5)
    iocctl(etcd, "apply", "-f", "-", input=snap_manifest("s1"))
    s1 = wait_for(lambda: ready(etcd, "s1"), timeout=20, what="s1 ready")["status"]
    qemu_io(uri, "write -P 0xbb 0 4M", "write -P 0xb1 40M 1M")

    assert s1["phase"] == "Ready" and s1["size"] == SIZE and s1["creationTime"], s1
    assert sorted((r["node"], r["state"]) for r in s1["replicas"]) == [
        ("a", "ready"), ("b", "ready"), ("c", "ready")], s1
    take = json.loads(etcd.range("/ioc/v1/snapshot-take/s1")["/ioc/v1/snapshot-take/s1"])
    print(f"s1 taken, writes held {take['heldMs']} ms")

    # The snapshot as each replica holds it: A, not B, and equal everywhere.
    img = tmp_path / "a.raw"
    with open(img, "wb") as f:
        f.truncate(SIZE)
        f.write(b"\xaa" * (4 * MiB))
        f.seek(40 * MiB)
        f.write(b"\xa1" * MiB)
    sums = {}
    for n, d in nodes.items():
        d.rpc("nbd_export_add", name="snap-s1", bdev=f"pool-{n}/db:s1", read_only=True)
        suri = d.uri("snap-s1")
        if n == "b":
            qemu_io(suri, "read -P 0xaa 0 4M", "read -P 0xa1 40M 1M", "read -P 0 4M 36M",
                    read_only=True)
            run([qemu_img, "compare", "-f", "raw", "-F", "raw", img, suri])
        sums[n] = export_checksum(suri, SIZE)
    assert len(set(sums.values())) == 1, sums
    qemu_io(uri, "read -P 0xbb 0 4M", "read -P 0xb1 40M 1M", read_only=True)

    listed = iocctl(etcd, "get", "snapshots").stdout
    assert re.search(r"^s1\s+db\s+true\s+64MiB", listed, re.M), listed
    watch.terminate()
    out = watch.communicate(timeout=10)[0].decode()
    assert out.count("NAME") == 1, out
    rows = [line for line in out.splitlines() if line.startswith("s1 ")]
    assert len(rows) >= 2 and " false " in rows[0] and " true " in rows[-1], out

    # Degraded: c's child faulted by hand; s2 is taken on a and b only.
    child_c = next(r["uri"] for r in status(etcd)["replicas"] if r["node"] == "c")
    nodes["a"].rpc("nexus_child_fault", name="db", uri=child_c)
    iocctl(etcd, "apply", "-f", "-", input=snap_manifest("s2"))
    s2 = wait_for(lambda: ready(etcd, "s2"), timeout=20, what="s2 ready")["status"]
    assert sorted((r["node"], r["state"]) for r in s2["replicas"]) == [
        ("a", "ready"), ("b", "ready"), ("c", "absent")], s2
    assert not any(v["name"] == "db:s2" for v in nodes["c"].rpc("volume_list"))
    nodes["a"].rpc("nexus_child_online", name="db", uri=child_c)
    wait_for(lambda: phase_is(etcd, "Online"), timeout=30, what="c rebuilt, db Online")
    assert [r["state"] for r in snapshot(etcd, "s2")["status"]["replicas"]
            if r["node"] == "c"] == ["absent"]

    # A Volume with Snapshots is not deleted; deleting the Snapshots frees them everywhere.
    p = iocctl(etcd, "delete", "volume", "db", check=False)
    assert p.returncode != 0 and "s1, s2" in p.stderr, p.stderr
    assert "/ioc/v1/volume/db" in etcd.range("/ioc/v1/volume/")
    iocctl(etcd, "delete", "snapshot", "s1")
    wait_for(lambda: not [k for k in etcd.range("/ioc/v1/") if "s1" in k],
             timeout=30, what="s1's records gone")
    for n, d in nodes.items():
        assert [v["name"] for v in d.rpc("volume_list") if v["snapshot"]] == (
            ["db:s2"] if n != "c" else []), n
        assert not [x for x in d.rpc("nbd_export_list") if x["name"] == "snap-s1"], n
    qemu_io(uri, "read -P 0xbb 0 4M", "read -P 0xb1 40M 1M", read_only=True)
    # s2's resource removed behind iocctl's back (no tombstone): its pool
    # snapshots stay until the volume goes, then leave with it (parent chain).
    etcd.delete("/ioc/v1/snapshot/s2")
    wait_for(lambda: not [k for k in etcd.range("/ioc/v1/") if "s2" in k],
             timeout=30, what="s2's records gone")
    assert any(v["name"] == "db:s2" for v in nodes["a"].rpc("volume_list"))
    iocctl(etcd, "delete", "volume", "db")
    wait_for(lambda: not records(etcd), timeout=30, what="db records gone")
    for n, d in nodes.items():
        assert holds_nothing(d) == [], n
    wait_for(lambda: pools_used(etcd) == base, what="pools' used back where it started")
