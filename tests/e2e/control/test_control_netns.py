"""Each iocd in its own network namespace, etcd in the root namespace.

One namespace per node with a veth pair to the root namespace (10.99.N.0/30:
.1 in the root namespace, .2 in the node's); etcd listens on every .1, each
iocd reaches etcd over its own veth and serves NBD on its .2. A 1-replica
Volume applied with iocctl goes Online on node b; qemu-io in the root
namespace writes and reads it through b's veth. Only the namespaces and veth
pairs this test creates are touched, and all are deleted in teardown.
Needs root (ip netns). Runtime about 10 s."""
import os
import subprocess

import pytest

from cp_e2e import Etcd, iocctl, wait_for
from ioc_e2e import BUILD, Iocd, free_port, need, qemu_io, stop_process
from test_control_volume import ISCSI_NONE, online

pytestmark = pytest.mark.slow


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@pytest.fixture
def netns(tmp_path):
    """netns(name) -> (namespace, root address, node address); all deleted at the end."""
    if os.geteuid() != 0 or subprocess.run(["ip", "netns", "list"],
                                           capture_output=True).returncode != 0:
        pytest.fail("needs root and ip netns (Debian package iproute2); run the suite as root",
                    pytrace=False)
    made = []
    tag = f"{os.getpid() % 100000}"
    base = (os.getpid() % 60) * 4

    def make(name):
        i = len(made)
        ns, host, peer = f"iocns{name}{tag}", f"ivh{name}{tag}", f"ivn{name}{tag}"
        net = f"10.99.{base + i}"
        made.append((ns, host))
        ip("netns", "add", ns)
        ip("link", "add", host, "type", "veth", "peer", "name", peer)
        ip("link", "set", peer, "netns", ns)
        ip("addr", "add", f"{net}.1/30", "dev", host)
        ip("link", "set", host, "up")
        ip("-n", ns, "addr", "add", f"{net}.2/30", "dev", peer)
        ip("-n", ns, "link", "set", peer, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        wrapper = tmp_path / f"iocd-{name}.sh"
        wrapper.write_text(f"#!/bin/sh\nexec ip netns exec {ns} {BUILD / 'iocd'} \"$@\"\n")
        wrapper.chmod(0o755)
        return ns, f"{net}.1", f"{net}.2", wrapper

    yield make
    for ns, host in made:
        ip("link", "del", host, check=False)  # deletes the peer in the namespace too
        ip("netns", "del", ns, check=False)


def test_netns_apply_online_qemu_io(netns, tmp_path):
    need("qemu-io")
    nets = {n: netns(n) for n in "ab"}
    cport, pport = free_port(), free_port()
    urls = {n: f"http://{nets[n][1]}:{cport}" for n in nets}
    etcd = Etcd(tmp_path)
    etcd.url = urls["a"]
    peer = f"http://127.0.0.1:{pport}"
    etcd.log = open(tmp_path / "etcd.log", "ab")
    etcd.proc = subprocess.Popen(
        ["etcd", "--name", "t", "--data-dir", str(tmp_path / "etcd-data"),
         "--listen-client-urls", ",".join(urls.values()),
         "--advertise-client-urls", urls["a"], "--listen-peer-urls", peer,
         "--initial-advertise-peer-urls", peer, "--initial-cluster", f"t={peer}"],
        stdin=subprocess.DEVNULL, stdout=etcd.log, stderr=etcd.log)
    daemons = []
    try:
        wait_for(lambda: _answers(etcd), what="etcd on the veth addresses")
        for n in "ab":
            ns, host, addr, wrapper = nets[n]
            extra = ["--controller", "--replica-grace", "1h"] if n == "a" else []
            d = Iocd(tmp_path / f"iocd-{n}", ["--node", n, "--etcd", urls[n], *ISCSI_NONE,
                                              "--nbd-listen", f"{addr}:{free_port()}", *extra])
            d.binary = wrapper
            daemons.append(d.start())
        wait_for(lambda: len(etcd.range("/ioc/v1/node/")) == 2, what="both nodes registered")
        iocctl(etcd, "apply", "-f", "-", input=f"""apiVersion: ioc/v1alpha1
kind: Pool
metadata: {{name: pool-b}}
spec: {{node: b, path: {tmp_path}/pool-b.img, size: 256MiB}}
---
apiVersion: ioc/v1alpha1
kind: Volume
metadata: {{name: db}}
spec: {{size: 64MiB, replicas: 1}}
""")
        v = wait_for(lambda: online(etcd), timeout=30, what="volume db Online")
        uri = v["status"]["uri"]
        assert uri.startswith(f"nbd://{nets['b'][2]}:"), uri
        assert [r["node"] for r in v["status"]["replicas"]] == ["b"]
        qemu_io(uri, "write -P 0x5a 0 1M")
        qemu_io(uri, "read -P 0x5a 0 1M", read_only=True)
    finally:
        for d in daemons:
            if d.alive():
                status_, killed = d.stop()
                assert status_ == 0 and not killed, d.log_tail()
        stop_process(etcd.proc)
        etcd.log.close()


def _answers(etcd):
    try:
        etcd.range("/")
        return True
    except OSError:
        return False
