"""Fixtures for the control-plane tests (helpers live in cp_e2e.py).

`etcd` starts a single-member etcd on free loopback ports with its data in
the test's tmp_path and stops it by PID at the end.
"""
import pytest

from cp_e2e import Etcd


@pytest.fixture
def etcd(tmp_path):
    """A fresh etcd for one test."""
    e = Etcd(tmp_path).start()
    yield e
    e.stop()

