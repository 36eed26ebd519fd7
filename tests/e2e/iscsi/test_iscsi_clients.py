"""libiscsi's tools and qemu's iscsi driver against iocd's iSCSI target:
discovery, INQUIRY, READ CAPACITY, qemu-img convert/compare on 1 GiB,
qemu-io patterns, and the session list of iscsi_target_list."""
import os

from iscsi_util import need_qemu_iscsi
from ioc_e2e import GiB, MiB, need, run


def test_iscsi_discovery_inquiry_capacity(iscsi_iocd, tmp_path):
    iqn = iscsi_iocd.file_target("d0", tmp_path / "d0.img", size="64MiB")
    p = run([need("iscsi-ls"), "-s", f"iscsi://{iscsi_iocd.portal()}"])
    assert f"Target:{iqn} Portal:{iscsi_iocd.portal()},1" in p.stdout, p.stdout
    assert "Lun:0" in p.stdout and "Type:DIRECT_ACCESS" in p.stdout, p.stdout

    p = run([need("iscsi-inq"), iscsi_iocd.url(iqn)])
    assert "Vendor:IOC" in p.stdout and "Peripheral Device Type:DIRECT_ACCESS" in p.stdout
    for page in ("0x80", "0x83", "0xb0", "0xb1", "0xb2"):
        run([need("iscsi-inq"), "-e", "1", "-c", page, iscsi_iocd.url(iqn)])

    p = run([need("iscsi-readcapacity16"), iscsi_iocd.url(iqn)])
    assert "Total size:67108864" in p.stdout, p.stdout
    assert "LBPME:1" in p.stdout


def test_iscsi_qemu_img_convert_compare_1g(iscsi_iocd, tmp_path):
    need_qemu_iscsi()
    qemu_img = need("qemu-img")
    iqn = iscsi_iocd.file_target("big", tmp_path / "big.img", size="1GiB")
    src = tmp_path / "src.raw"
    # 1 GiB, random data in 16 MiB of every 128 MiB, the rest zero
    with open(src, "wb") as f:
        f.truncate(GiB)
        for off in range(0, GiB, 128 * MiB):
            f.seek(off + 3 * MiB + 512)
            f.write(os.urandom(16 * MiB))
    url = iscsi_iocd.url(iqn)
    run([qemu_img, "convert", "-n", "-f", "raw", "-O", "raw", src, url], timeout=300)
    p = run([qemu_img, "compare", "-f", "raw", "-F", "raw", src, url], check=False,
            timeout=300)
    assert p.returncode == 0, f"qemu-img compare: {p.stdout}{p.stderr}"
    # one byte different is noticed
    with open(src, "r+b") as f:
        f.seek(700 * MiB)
        f.write(b"\x01")
    p = run([qemu_img, "compare", "-f", "raw", "-F", "raw", src, url], check=False,
            timeout=300)
    assert p.returncode == 1, f"expected a mismatch: {p.stdout}{p.stderr}"


def test_iscsi_qemu_io_patterns(iscsi_iocd, tmp_path):
    need_qemu_iscsi()
    qemu_io = need("qemu-io")
    iqn = iscsi_iocd.file_target("q", tmp_path / "q.img", size="32MiB")
    url = iscsi_iocd.url(iqn)
    run([qemu_io, "-f", "raw", "-c", "write -P 0xab 1M 3M", "-c", "write -z 2M 64k",
         "-c", "discard 8M 1M", "-c", "flush", url])
    p = run([qemu_io, "-f", "raw", "-c", "read -P 0xab 1M 1M", "-c", "read -P 0 2M 64k",
             "-c", "read -P 0xab 3M 1M", "-c", "read -P 0 8M 1M", url])
    assert "Pattern verification failed" not in p.stdout, p.stdout
    data = (tmp_path / "q.img").read_bytes()
    assert data[1 * MiB:2 * MiB] == b"\xab" * MiB
    assert data[2 * MiB:2 * MiB + 65536] == bytes(65536)


def test_iscsi_target_list_sessions(iscsi_iocd, tmp_path, procs):
    iqn = iscsi_iocd.file_target("s", tmp_path / "s.img", size="16MiB")
    t = iscsi_iocd.rpc("iscsi_target_list")
    assert [x["iqn"] for x in t] == [iqn]
    assert t[0]["luns"] == [{"lun": 0, "bdev": "s", "size": 16 * MiB}]
    assert t[0]["sessions"] == 0
    # the bdev is in use while exported
    iscsi_iocd.rpc("iscsi_target_delete", iqn=iqn)
    assert iscsi_iocd.rpc("iscsi_target_list") == []
    iscsi_iocd.rpc("bdev_delete", name="s")
