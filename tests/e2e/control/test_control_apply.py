"""iocctl apply/get/describe/delete against a real etcd: validation with field
paths and nothing written, idempotence, and golden tables."""
import json
import re
from pathlib import Path

import pytest

from cp_e2e import iocctl

GOLDEN = Path(__file__).parent / "golden"

NODE_A = {"apiVersion": "ioc/v1alpha1", "kind": "Node",
          "metadata": {"name": "a", "creationTimestamp": "2024-01-01T00:00:00Z"},
          "spec": {"addresses": ["127.0.0.1"], "nbd": "127.0.0.1:10809"}}

POOL = """apiVersion: ioc/v1alpha1
kind: Pool
metadata: {name: pool-a}
spec: {node: a, path: /var/lib/ioc/pool-a.img, size: 10GiB}
"""

VOLUME = """apiVersion: ioc/v1alpha1
kind: Volume
metadata: {name: db}
spec: {size: 1GiB, replicas: %s, thin: true, protocols: [nbd, iscsi]}
"""


def normalise(text):
    """Ages change from run to run: replace them, and the column padding they move."""
    text = re.sub(r"\b\d+[smhd]\b", "AGE", text)
    return "\n".join(re.sub(r"(?<=\S)  +", "  ", line) for line in text.split("\n"))


def check_golden(name, text):
    path = GOLDEN / name
    assert normalise(text) == path.read_text(), f"output differs from {path}:\n{text}"


INVALID = [
    ("unknown-field", VOLUME.replace("size: 1GiB", "sise: 1GiB") % 1,
     "spec.sise: unknown field"),
    ("bad-size", VOLUME.replace("1GiB", '"1GB?"') % 1, 'spec.size: bad size "1GB?"'),
    ("replicas-range", VOLUME % 7, "spec.replicas: must be between 1 and 5, got 7"),
    ("replicas-impossible", POOL + "---\n" + VOLUME % 3,
     "spec.replicas: 3 replicas need 3 nodes with a pool, only 1 known"),
    ("missing-pool-node", POOL.replace("node: a", "node: zz"),
     'spec.node: node "zz" is not registered'),
    ("valid-then-invalid", POOL + "---\n" + VOLUME.replace("thin: true", "thin: maybe") % 1,
     "document 2 (Volume db): spec.thin: expected true or false"),
]


@pytest.mark.parametrize("name,manifest,message", INVALID, ids=[i[0] for i in INVALID])
def test_apply_invalid_rejected_with_field_path_nothing_written(etcd, tmp_path, name, manifest,
                                                                message):
    etcd.put("/ioc/v1/node/a", json.dumps(NODE_A))
    f = tmp_path / f"{name}.yaml"
    f.write_text(manifest)
    r = iocctl(etcd, "apply", "-f", str(f), check=False)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
    assert set(etcd.range("/ioc/v1/")) == {"/ioc/v1/node/a"}, "something was written"


def test_apply_idempotent_get_describe_delete(etcd, tmp_path):
    etcd.put("/ioc/v1/node/a", json.dumps(NODE_A))
    r = iocctl(etcd, "apply", "-f", "-", input=POOL + "---\n" + VOLUME % 1)
    assert r.stdout == "Pool/pool-a created\nVolume/db created\n"
    r = iocctl(etcd, "apply", "-f", "-", input=POOL + "---\n" + VOLUME % 1)
    assert r.stdout == "Pool/pool-a unchanged\nVolume/db unchanged\n"
    keys = etcd.range("/ioc/v1/")
    assert set(keys) == {"/ioc/v1/node/a", "/ioc/v1/pool/pool-a", "/ioc/v1/volume/db"}
    assert json.loads(keys["/ioc/v1/volume/db"])["spec"]["size"] == 1 << 30

    check_golden("get-volumes.out", iocctl(etcd, "get", "volumes").stdout)
    check_golden("get-pools-wide.out", iocctl(etcd, "get", "pools", "-o", "wide").stdout)
    check_golden("get-nodes.out", iocctl(etcd, "get", "nodes").stdout)
    check_golden("describe-volume.out", iocctl(etcd, "describe", "volume", "db").stdout)
    doc = json.loads(iocctl(etcd, "get", "volume", "db", "-o", "json").stdout)
    assert doc["spec"]["replicas"] == 1 and doc["metadata"]["name"] == "db"
    y = iocctl(etcd, "get", "volumes", "-o", "yaml").stdout
    assert y.startswith("apiVersion: ioc/v1alpha1\nkind: List\nitems:\n- apiVersion: ioc/v1alpha1\n")

    # What get -o yaml prints applies back unchanged.
    one = iocctl(etcd, "get", "volume", "db", "-o", "yaml").stdout
    assert iocctl(etcd, "apply", "-f", "-", input=one).stdout == "Volume/db unchanged\n"

    assert iocctl(etcd, "delete", "volume", "db").stdout == "Volume/db deleted\n"
    r = iocctl(etcd, "get", "volume", "db", check=False)
    assert r.returncode != 0 and 'volume "db" not found' in r.stderr
    r = iocctl(etcd, "delete", "volume", "db", check=False)
    assert r.returncode != 0
