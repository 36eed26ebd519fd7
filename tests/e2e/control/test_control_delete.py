"""Volume deletion frees its data on every node (issue 6), on loopback.

`iocctl delete volume` replaces the Volume by a tombstone; each node's
agent removes the nexus, the NBD exports, the replica bdevs and the
replica pool volume it holds (checked against the Volume's uid) and
reports cleaned; the controller then drops the tombstone and every record
of the volume. Checked with the daemons' own lists and with the pools'
`used` as `iocctl get pools -o json` shows it: back to what it was before
the volume existed.

Down-node variant: a replica node is killed before the delete; the others
clean up, the volume shows as Deleting waiting for that node, applying the
same name again is refused (nothing written) until the node comes back;
its agent then deletes its replica and the records go.
Runtime about 25 s."""
import json

from cp_e2e import iocctl, phase_is, wait_for
from ioc_e2e import MiB, qemu_io
from test_control_volume import kill9


def pools_manifest(tmp_path, nodes):
    return "---\n".join(f"""apiVersion: ioc/v1alpha1
kind: Pool
metadata: {{name: pool-{n}}}
spec: {{node: {n}, path: {tmp_path}/pool-{n}.img, size: 256MiB}}
""" for n in nodes)


VOLUME = """apiVersion: ioc/v1alpha1
kind: Volume
metadata: {name: db}
spec: {size: 64MiB, replicas: 3, nexusNode: a}
"""


def pools_used(etcd):
    out = json.loads(iocctl(etcd, "get", "pools", "-o", "json").stdout)
    return {p["metadata"]["name"]: p.get("status", {}).get("used") for p in out["items"]}


def holds_nothing(node, vol="db"):
    """What node's iocd still has of vol: exports, bdevs, nexuses, pool volumes (empty: nothing)."""
    left = [x["name"] for x in node.rpc("nbd_export_list")
            if x["name"] == vol or x["name"].startswith(vol + "@")]
    left += [b["name"] for b in node.rpc("bdev_list")
             if b["name"] == vol or b["name"].startswith(vol + ".g") or
             b["name"].endswith("/" + vol) or f"/{vol}:" in b["name"]]
    left += [v["bdev"] for v in node.rpc("volume_list")
             if v["name"] == vol or v["name"].startswith(vol + ":")]
    return left


def records(etcd, vol="db"):
    """Every etcd key that still names the volume."""
    return sorted(k for k in etcd.range("/ioc/v1/")
                  if f"/{vol}/" in k + "/" and not k.startswith("/ioc/v1/pool/"))


def start(topo, names):
    nodes = {n: topo.node(n, *(["--controller", "--replica-grace", "1h"] if n == "a" else []))
             for n in names}
    wait_for(lambda: len(topo.etcd.range("/ioc/v1/node/")) == len(names), what="nodes")
    return nodes


def online_volume(topo, tmp_path, names="abc"):
    """Nodes `names` (a runs the controller), a Pool each and Volume db Online.
    Returns (nodes, each pool's used bytes before db, db's status)."""
    nodes = start(topo, names)
    iocctl(topo.etcd, "apply", "-f", "-", input=pools_manifest(tmp_path, names))
    base = wait_for(lambda: (lambda u: u if all(v is not None for v in u.values()) and
                             len(u) == len(names) else None)(pools_used(topo.etcd)),
                    what="pool status")
    iocctl(topo.etcd, "apply", "-f", "-", input=VOLUME)
    return nodes, base, wait_for(lambda: phase_is(topo.etcd, "Online"), what="db Online")


def test_delete_volume_frees_data_on_every_node(loop, tmp_path):
    etcd = loop.etcd
    nodes, base, st = online_volume(loop, tmp_path)
    uid = json.loads(etcd.range("/ioc/v1/volume/db")["/ioc/v1/volume/db"])["metadata"]["uid"]
    assert len(uid) == 32, uid
    for n, d in nodes.items():  # every replica carries its Volume's uid
        v = next(x for x in d.rpc("volume_list") if x["name"] == "db")
        assert v["attrs"].get("ioc.volume-uid") == uid, (n, v)
    qemu_io(st["uri"], "write -P 0x5c 0 16M")
    grown = wait_for(lambda: (lambda u: u if all(u[p] >= base[p] + 16 * MiB for p in u)
                              else None)(pools_used(etcd)), what="pools used to grow")
    print(f"used before {base}, after writing {grown}")

    out = iocctl(etcd, "delete", "volume", "db").stdout
    assert "Volume/db deleted" in out and "a, b, c" in out, out
    wait_for(lambda: not records(etcd), timeout=30, what="every record of db gone")
    for n, d in nodes.items():
        assert holds_nothing(d) == [], (n, holds_nothing(d))
        assert d.rpc("nexus_list") == [], n
    wait_for(lambda: pools_used(etcd) == base, what="pools' used back to where it was")
    assert "db" not in iocctl(etcd, "get", "volumes", check=False).stdout


def test_delete_volume_with_a_node_down(loop, tmp_path):
    etcd = loop.etcd
    nodes, base, st = online_volume(loop, tmp_path)
    qemu_io(st["uri"], "write -P 0x3c 0 8M")

    kill9(nodes["c"])
    out = iocctl(etcd, "delete", "volume", "db").stdout
    assert "a, b, c" in out, out
    for n in "ab":
        wait_for(lambda: not holds_nothing(nodes[n]), what=f"node {n} cleaned")
    wait_for(lambda: set(k.rsplit("/", 1)[1] for k in etcd.range("/ioc/v1/cleaned/volume/db/"))
             == {"a", "b"}, what="a and b report cleaned")
    row = iocctl(etcd, "get", "volumes", "-o", "json").stdout
    items = {i["metadata"]["name"]: i for i in json.loads(row)["items"]}
    assert items["db"]["status"]["phase"] == "Deleting", items
    assert items["db"]["status"]["waitingFor"] == ["c"], items
    assert "Deleting" in iocctl(etcd, "get", "volumes").stdout
    # The name is not free while c still holds the old data: nothing written.
    p = iocctl(etcd, "apply", "-f", "-", input=VOLUME, check=False)
    assert p.returncode != 0 and "still being deleted" in p.stderr, p.stdout + p.stderr
    assert "/ioc/v1/volume/db" not in etcd.range("/ioc/v1/volume/")
    assert "/ioc/v1/tombstone/volume/db" in etcd.range("/ioc/v1/tombstone/")

    c = loop.restart(nodes["c"])
    wait_for(lambda: not records(etcd), timeout=30, what="tombstone and records gone after c")
    assert holds_nothing(c) == []
    wait_for(lambda: pools_used(etcd) == base, what="pools' used back, pool-c too")
    iocctl(etcd, "apply", "-f", "-", input=VOLUME)  # the name is free again
