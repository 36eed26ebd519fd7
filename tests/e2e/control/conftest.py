"""Fixtures for the control-plane tests (helpers live in cp_e2e.py).

`etcd` starts a single-member etcd on free loopback ports with its data in
the test's tmp_path and stops it by PID at the end.

`topo` runs a cluster test twice: on loopback, and with every iocd node in
its own network namespace on one bridge (cp_e2e.Netns). `topo.etcd` is the
etcd to use, `topo.node(name, *extra)` starts a node, `topo.restart(old)`
starts a killed node again on its old port; every daemon is stopped and
checked at the end, and the namespaces are deleted, also after a failure.
`loop` is the loopback topology alone.
"""
import pytest

from cp_e2e import Etcd, Loopback, Netns


@pytest.fixture
def etcd(tmp_path):
    """A fresh etcd for one test."""
    e = Etcd(tmp_path).start()
    yield e
    e.stop()


@pytest.fixture(params=["loopback", "netns"])
def topo(request, tmp_path):
    t = (Loopback if request.param == "loopback" else Netns)(tmp_path, request)
    yield t
    problems = t.close()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def loop(request, tmp_path):
    """The loopback topology alone (scenarios whose point is not the network)."""
    t = Loopback(tmp_path, request)
    yield t
    problems = t.close()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)
