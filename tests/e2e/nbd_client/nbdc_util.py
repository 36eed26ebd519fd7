"""Helpers shared by the NBD initiator tests (not fixtures).

Tests import from here, never from conftest: several directories have a
conftest.py, and `import conftest` would get whichever was loaded first."""
import shutil
import socket
import time

import pytest

from ioc_e2e import MiB, run, need


def create_client(iocd, name, uri, io_timeout=None, export=True):
    params = dict(name=name, uri=uri)
    if io_timeout is not None:
        params["io_timeout"] = io_timeout
    iocd.rpc("bdev_nbd_client_create", **params)
    if export:
        iocd.rpc("nbd_export_add", name=name, bdev=name)
    return iocd.uri(name)


def client_info(iocd, name):
    return iocd.rpc("bdev_list", name=name)[0]


def wait_state(iocd, name, state, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client_info(iocd, name)
        if info["state"] == state:
            return info
        time.sleep(0.1)
    raise AssertionError(f"bdev {name} not {state} after {timeout}s: {info}")


def write_pattern_and_compare(uri, image):
    """Write through uri with qemu-io (data, zeroes, discard, FUA), then qemu-img compare."""
    from ioc_e2e import qemu_io

    qemu_io(uri, "write -P 0x11 0 1M", "write -P 0x22 -f 1M 3M", "write -z 2M 512k",
            "discard 3M 64k", "aio_write -P 0x33 8M 16M", "aio_write -P 0x44 30M 2M",
            "aio_flush", "read -P 0x11 0 1M", "read -P 0x33 8M 16M", "flush")
    run([need("qemu-img"), "compare", "-f", "raw", "-F", "raw", uri, str(image)])


def make_image(path, size=64 * MiB):
    with open(path, "wb") as f:
        f.truncate(size)
    return path


# Debian packages of the servers (scripts/deps.sh installs them).
SERVER_PACKAGES = {"nbdkit": "nbdkit", "qemu-storage-daemon": "qemu-system-common"}


def need_server(tool):
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} not found: install the Debian package "
                    f"'{SERVER_PACKAGES[tool]}' (scripts/deps.sh test does it)",
                    pytrace=False)
    return path


def wait_port(port, proc, timeout=10.0):
    """Wait until something accepts on 127.0.0.1:port (and proc is still alive)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited with {proc.returncode}: "
                        f"{proc.stderr.read().decode(errors='replace') if proc.stderr else ''}",
                        pytrace=False)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.recv(18)
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing listens on port {port} after {timeout}s", pytrace=False)
