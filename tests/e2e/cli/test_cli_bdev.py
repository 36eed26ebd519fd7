"""iocctl against a live iocd: tables (golden files), json output, errors."""
import json
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"


def golden(name, text):
    want = (GOLDEN / name).read_text()
    assert text == want, f"output differs from golden/{name}:\n--- got\n{text}--- want\n{want}"


def setup_devices(iocd, tmp_path):
    iocd.rpc("bdev_malloc_create", name="m0", size="64MiB")
    iocd.rpc("bdev_malloc_create", name="m1", size="1GiB", block_size=4096)
    iocd.rpc("bdev_file_create", name="f0", path=str(tmp_path / "f0.raw"), size="10MiB")
    iocd.rpc("bdev_error_create", name="e0", base="m1")
    iocd.rpc("nbd_export_add", name="e0", bdev="e0")
    iocd.rpc("nbd_export_add", name="ro", bdev="f0", read_only=True)


def test_cli_bdev_list_golden(iocd, tmp_path):
    setup_devices(iocd, tmp_path)
    golden("bdev_list.out", iocd.iocctl("bdev", "list").stdout)
    golden("nbd_export_list.out", iocd.iocctl("nbd", "export", "list").stdout)
    j = json.loads(iocd.iocctl("bdev", "list", "-o", "json").stdout)
    assert [b["name"] for b in j] == ["e0", "f0", "m0", "m1"]
    assert j == iocd.rpc("bdev_list")


def test_cli_bdev_create_and_list(iocd):
    iocd.iocctl("bdev", "create", "malloc", "disk1", "--size", "32MiB")
    out = iocd.iocctl("bdev", "list").stdout
    rows = [line.split() for line in out.splitlines()]
    assert ["disk1", "malloc", "32MiB", "512"] in rows, out
    iocd.iocctl("nbd", "export", "add", "disk1", "disk1")
    out = iocd.iocctl("nbd", "export", "list").stdout
    assert ["disk1", "disk1", "32MiB", "rw", "0"] in [l.split() for l in out.splitlines()], out


def test_cli_bdev_errors(iocd):
    p = iocd.iocctl("call", "bdev_malloc_create", '{"name":"x","size":"12XB"}', check=False)
    assert p.returncode == 1 and "size" in p.stderr, p
    p = iocd.iocctl("call", "no_such_method", "{}", check=False)
    assert p.returncode == 1 and "no_such_method" in p.stderr, p
    # iocctl checks sizes itself: usage error, exit 2
    p = iocd.iocctl("bdev", "create", "malloc", "y", "--size", "12XB", check=False)
    assert p.returncode == 2 and "--size" in p.stderr, p
    iocd.iocctl("bdev", "create", "malloc", "z", "--size", "1MiB")
    iocd.iocctl("nbd", "export", "add", "z", "z")
    p = iocd.iocctl("bdev", "delete", "z", check=False)
    assert p.returncode == 1 and "in use" in p.stderr, p
    iocd.iocctl("nbd", "export", "remove", "z")
    iocd.iocctl("bdev", "delete", "z")
    assert "z" not in iocd.iocctl("bdev", "list").stdout.split()


def test_cli_bdev_no_daemon(tmp_path):
    """A missing socket is an error that names the socket, not a hang."""
    from ioc_e2e import BUILD, run
    p = run([BUILD / "iocctl", "-s", tmp_path / "nope.sock", "bdev", "list"],
            check=False, timeout=30)
    assert p.returncode != 0 and "nope.sock" in p.stderr, p
