"""Helpers of the iSCSI end-to-end tests (imported by name, unlike conftest.py,
which several directories have)."""
import os

import pytest

IQN_PREFIX = "iqn.2024-01.io.ioc.test"
INITIATOR = "iqn.2024-01.io.ioc.test:initiator"
QEMU_ISCSI = "/usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so"


def need_qemu_iscsi():
    """qemu's iscsi:// driver is a module of its own Debian package."""
    if not os.path.exists(QEMU_ISCSI):
        pytest.fail(f"{QEMU_ISCSI} not found: install the Debian package 'qemu-block-extra' "
                    "(scripts/deps.sh test does it)", pytrace=False)


class IscsiIocd:
    """An iocd with its iSCSI port, plus target and URL helpers."""

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
