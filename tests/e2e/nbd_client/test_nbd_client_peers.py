"""The NBD initiator against each kind of server: a bdev in iocd A backed by an
export of iocd B, of nbdkit, or of qemu-storage-daemon, re-exported by A and
driven with qemu-io; the data that reaches the server's file is then compared
with qemu-img."""
import pytest

from ioc_e2e import MiB, need, run, qemu_io
from nbdc_util import client_info, create_client, make_image, write_pattern_and_compare


def test_nbd_client_iocd_to_iocd(make_iocd, tmp_path):
    a, b = make_iocd(), make_iocd()
    image = make_image(tmp_path / "b.img")
    b.file_export("vol", image)
    uri = create_client(a, "r0", b.uri("vol"))
    info = client_info(a, "r0")
    assert info["module"] == "nbd_client" and info["state"] == "connected"
    assert info["size"] == 64 * MiB and info["server"]["structured_replies"]
    assert {"read", "write", "flush", "unmap", "write_zeroes", "block_status"} <= set(
        info["io_types"])
    write_pattern_and_compare(uri, image)
    # block status passes through: the zeroed range is reported as zero
    out = run([need("nbdinfo"), "--map", uri]).stdout
    assert "zero" in out
    a.rpc("nbd_export_remove", name="r0")
    a.rpc("bdev_delete", name="r0")
    assert a.rpc("bdev_list") == []


def test_nbd_client_unix_socket_and_iocctl(make_iocd, tmp_path):
    a, b = make_iocd(), make_iocd()
    b.malloc_export("m", size="16MiB")
    out = a.iocctl("bdev", "create", "nbd", "u0", b.uri("m", unix=True), "--timeout", "7")
    assert out.stdout.strip() == "u0"
    info = client_info(a, "u0")
    assert info["io_timeout"] == 7 and info["size"] == 16 * MiB
    a.rpc("nbd_export_add", name="u0", bdev="u0")
    qemu_io(a.uri("u0"), "write -P 0x5a 0 4M", "read -P 0x5a 0 4M")
    qemu_io(b.uri("m"), "read -P 0x5a 0 4M", read_only=True)


def test_nbd_client_errors_name_the_uri(make_iocd):
    a, b = make_iocd(), make_iocd()
    b.malloc_export("m", size="16MiB")
    bad = b.uri("nope")
    p = a.iocctl("bdev", "create", "nbd", "e0", bad, check=False)
    assert p.returncode == 1 and bad in p.stderr and "no export" in p.stderr
    p = a.iocctl("bdev", "create", "nbd", "e0", "nbd://127.0.0.1:1/x", check=False)
    assert p.returncode == 1 and "cannot connect" in p.stderr
    p = a.iocctl("bdev", "create", "nbd", "e0", "http://x/y", check=False)
    assert p.returncode == 1 and "expected nbd://" in p.stderr
    assert a.rpc("bdev_list") == []


def test_nbd_client_read_only_export(make_iocd):
    a, b = make_iocd(), make_iocd()
    b.malloc_export("ro", size="16MiB", read_only=True)
    create_client(a, "r", b.uri("ro"))
    info = client_info(a, "r")
    assert info["server"]["read_only"] and "write" not in info["io_types"]
    qemu_io(a.uri("r"), "read -P 0 0 1M", read_only=True)


@pytest.mark.parametrize("kind", ["nbdkit", "qemu-storage-daemon"])
def test_nbd_client_third_party_server(iocd, nbd_server, tmp_path, kind):
    image = make_image(tmp_path / "s.img")
    srv = nbd_server(kind, image)
    uri = create_client(iocd, "t0", srv.uri)
    assert client_info(iocd, "t0")["state"] == "connected"
    write_pattern_and_compare(uri, image)
    # qemu-img convert of the whole device through both hops
    run([need("qemu-img"), "convert", "-f", "raw", "-O", "raw", uri, tmp_path / "copy.raw"])
    run([need("qemu-img"), "compare", "-f", "raw", "-F", "raw", tmp_path / "copy.raw", image])


def test_nbd_client_nbdkit_memory(iocd, procs):
    from nbdc_util import need_server, wait_port
    from ioc_e2e import free_port

    port = free_port()
    p = procs.start([need_server("nbdkit"), "-f", "-p", port, "-i", "127.0.0.1",
                     "memory", "64M"])
    wait_port(port, p)
    uri = create_client(iocd, "mem", f"nbd://127.0.0.1:{port}/")
    qemu_io(uri, "write -P 0x77 1M 8M", "read -P 0x77 1M 8M", "read -P 0 0 1M",
            "write -z 2M 1M", "read -P 0 2M 1M")
