"""Fixtures of the iSCSI end-to-end tests.

`iscsi_iocd` is an iocd whose iSCSI target listens on a free loopback port
(the shared harness starts iocd with --iscsi-listen none unless asked).
Helpers create file-backed targets and build iscsi:// URLs.
"""
import pytest

from ioc_e2e import free_port

IQN_PREFIX = "iqn.2024-01.io.ioc.test"
INITIATOR = "iqn.2024-01.io.ioc.test:initiator"


class IscsiIocd:
    def __init__(self, d, port):
        self.d = d
        self.port = port

    def __getattr__(self, name):
        return getattr(self.d, name)

    def portal(self):
        return f"127.0.0.1:{self.port}"

    def url(self, iqn, lun=0, user=None, secret=None):
        cred = f"{user}%{secret}@" if user is not None else ""
        return f"iscsi://{cred}127.0.0.1:{self.port}/{iqn}/{lun}"

    def file_target(self, name, path, size="64MiB", **target_args):
        """A file bdev `name` exported as LUN 0 of IQN_PREFIX:name; returns the IQN."""
        self.d.rpc("bdev_file_create", name=name, path=str(path), size=size)
        iqn = f"{IQN_PREFIX}:{name}"
        self.d.rpc("iscsi_target_create", iqn=iqn, luns=[{"lun": 0, "bdev": name}],
                   **target_args)
        return iqn


@pytest.fixture
def iscsi_iocd(make_iocd):
    port = free_port()
    d = make_iocd("--iscsi-listen", f"127.0.0.1:{port}")
    return IscsiIocd(d, port)
