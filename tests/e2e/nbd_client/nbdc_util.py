"""Helpers shared by the NBD initiator tests (not fixtures)."""
import time

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
