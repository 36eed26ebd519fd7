"""The namespace topology itself (cp_e2e.Netns), which the cluster tests run
on through the `topo` fixture: an iocd in one node namespace is reached from
the root namespace and from another node namespace across the hub's bridge;
etcd answers on the root-side address; closing removes every namespace and
the root-side veth, and so does a failure while it is being built.
Needs root (ip netns). Runtime a few seconds."""
import json
import subprocess

import pytest

import cp_e2e
from cp_e2e import Netns, iocctl, wait_for
from ioc_e2e import need

pytestmark = pytest.mark.slow


def leftovers(t):
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return [n for n in t.namespaces_made if n in names] + \
        ([t.root_link_made] if f" {t.root_link_made}@" in links else [])


def test_netns_bridge_reaches_every_namespace_and_cleans_up(tmp_path, request):
    nbdinfo = need("nbdinfo")
    t = Netns(tmp_path, request, nodes="ab")
    try:
        assert t.etcd.url.startswith(f"http://{t.root_addr}:")
        a = t.node("a")
        b = t.node("b")
        wait_for(lambda: len(t.etcd.range("/ioc/v1/node/")) == 2, what="both nodes registered")
        nodes = {n["metadata"]["name"]: n for n in json.loads(
            iocctl(t.etcd, "get", "nodes", "-o", "json").stdout)["items"]}
        assert nodes["a"]["spec"]["nbd"] == f"{a.addr}:{a.port}", nodes["a"]
        assert a.addr != b.addr and a.addr.rsplit(".", 1)[0] == t.net
        a.malloc_export("m", "8MiB")
        uri = a.uri("m")
        root = subprocess.run([nbdinfo, "--size", uri], capture_output=True, text=True,
                              timeout=30)
        assert root.returncode == 0 and root.stdout.strip() == str(8 << 20), root.stderr
        peer = subprocess.run(["ip", "netns", "exec", b.ns, nbdinfo, "--size", uri],
                              capture_output=True, text=True, timeout=30)
        assert peer.returncode == 0 and peer.stdout.strip() == str(8 << 20), peer.stderr
    finally:
        problems = t.close()
    assert not problems, problems
    assert not leftovers(t)


def test_netns_failed_build_removes_what_it_made(tmp_path, request, monkeypatch):
    made = {}
    real = Netns._build

    def build_then_fail(self, nodes):
        real(self, nodes)
        made["t"] = self
        raise RuntimeError("injected failure after the network was built")

    monkeypatch.setattr(Netns, "_build", build_then_fail)
    with pytest.raises(RuntimeError, match="injected"):
        Netns(tmp_path, request, nodes="ab")
    t = made["t"]
    assert len(t.namespaces_made) == 3  # hub, a, b
    assert not leftovers(t)
    assert cp_e2e.ip("netns", "list").returncode == 0
