"""Fixtures of the iSCSI end-to-end tests.

`iscsi_iocd` is an iocd whose iSCSI target listens on a free loopback port
(the shared harness starts iocd with --iscsi-listen none unless asked);
helpers live in iscsi_util.py.
"""
import pytest

from ioc_e2e import free_port
from iscsi_util import IscsiIocd


@pytest.fixture
def iscsi_iocd(make_iocd):
    port = free_port()
    d = make_iocd("--iscsi-listen", f"127.0.0.1:{port}")
    return IscsiIocd(d, port)
