"""Fixtures for the nexus tests that need addresses: two network namespaces
joined by a veth pair (made and deleted by the test, never touching a link
outside them), and iocd processes started inside one of them. Processes are
stopped by PID, the namespaces deleted, in teardown."""
import os
import random
import shutil
import subprocess

import pytest

from ioc_e2e import BUILD, Iocd


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class NetPair:
    """Namespaces `a` (10.x.y.1) and `b` (10.x.y.2), veth `va` <-> `vb`."""

    def __init__(self):
        tag = f"{os.getpid() % 10000}{random.randrange(1000)}"
        self.a, self.b = f"iocnx-a{tag}", f"iocnx-b{tag}"
        self.va, self.vb = f"nxa{tag}"[:15], f"nxb{tag}"[:15]
        net = random.randrange(1, 250)
        self.addr_a, self.addr_b = f"10.213.{net}.1", f"10.213.{net}.2"
        self.made = []

    def create(self):
        if shutil.which("ip") is None:
            pytest.fail("ip not found: install the Debian package 'iproute2'", pytrace=False)
        for ns in (self.a, self.b):
            ip("netns", "add", ns)
            self.made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", self.a, "link", "add", self.va, "type", "veth", "peer", "name", self.vb,
           "netns", self.b)
        ip("-n", self.a, "addr", "add", f"{self.addr_a}/30", "dev", self.va)
        ip("-n", self.b, "addr", "add", f"{self.addr_b}/30", "dev", self.vb)
        ip("-n", self.a, "link", "set", self.va, "up")
        ip("-n", self.b, "link", "set", self.vb, "up")
        return self

    def cut(self, down):
        """Take the link in namespace b down (True) or up (False)."""
        ip("-n", self.b, "link", "set", self.vb, "down" if down else "up")

    def delete(self):
        for ns in self.made:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=30)


@pytest.fixture
def netpair():
    if os.geteuid() != 0:
        pytest.fail("the network-cut tests need root (ip netns)", pytrace=False)
    pair = NetPair()
    try:
        yield pair.create()
    finally:
        pair.delete()


@pytest.fixture
def make_ns_iocd(tmp_path):
    """Factory: make_ns_iocd(netns, *args) starts an iocd inside netns."""
    started = []

    def make(ns, *args):
        n = len(started)
        wrapper = tmp_path / f"iocd-ns{n}.sh"
        wrapper.write_text(f"#!/bin/sh\nexec ip netns exec {ns} {BUILD / 'iocd'} \"$@\"\n")
        wrapper.chmod(0o755)
        d = Iocd(tmp_path / f"nsiocd{n}", args)
        d.binary = wrapper
        started.append(d)
        return d.start()

    yield make
    problems = []
    for d in started:
        if d.proc is None or d.stopped:
            continue
        alive = d.alive()
        status, killed = d.stop()
        if not alive or killed or status != 0:
            problems.append(f"iocd (pid {d.pid}) in a netns: alive={alive} status={status} "
                            f"killed={killed}\n{d.log_tail()}")
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)
