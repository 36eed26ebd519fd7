"""libvblk (vblk-perf --verify) against iocd's vhost-user-blk export and
against qemu-storage-daemon, in every notification mode; afterwards the data
read back through NBD (iocd) or from the image (qemu-storage-daemon) equals
what libvblk reads. About 25 s in all."""
import hashlib

import pytest

from ioc_e2e import MiB, need, run, stop_process
from vhost_util import make_image, perf, start_qsd, vhost_file_export

MODES = ["eventfd", "busy", "adaptive"]


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.mark.slow
def test_vhost_verify_iocd_all_modes_then_nbd(iocd, tmp_path):
    image = make_image(tmp_path / "img", 64 * MiB)
    sock = tmp_path / "vhost.sock"
    uri = vhost_file_export(iocd, "v", image, sock)
    for i, mode in enumerate(MODES):
        res, _ = perf("--socket", sock, "--mode", mode, "--rw", "randrw", "--qd", "16",
                      "--runtime", "1.5", "--size", "16MiB", "--verify", "--seed", str(i + 1))
        assert res["verify_errors"] == 0 and res["errors"] == 0, res
        assert res["ios"] > 0, res
    # one sequential pass with larger blocks, several segments per ring
    res, _ = perf("--socket", sock, "--rw", "write", "--bs", "128k", "--qd", "4",
                  "--runtime", "1", "--size", "32MiB", "--verify")
    assert res["verify_errors"] == 0, res
    run([need("nbdcopy"), uri, tmp_path / "via-nbd"])
    run([*perf_dump(sock, tmp_path / "via-vblk")])
    assert digest(tmp_path / "via-nbd") == digest(tmp_path / "via-vblk")


def perf_dump(sock, out):
    from vhost_util import vblk_perf
    return [vblk_perf(), "--socket", sock, "--dump", out]


@pytest.mark.slow
def test_vhost_verify_qsd_all_modes(tmp_path, procs):
    image = make_image(tmp_path / "img", 64 * MiB)
    sock = str(tmp_path / "qsd.sock")
    qsd = start_qsd(procs, image, sock)
    for i, mode in enumerate(MODES):
        res, _ = perf("--socket", sock, "--mode", mode, "--rw", "randrw", "--qd", "16",
                      "--runtime", "1.5", "--size", "16MiB", "--verify", "--seed", str(i + 7))
        assert res["verify_errors"] == 0 and res["errors"] == 0, res
    run(perf_dump(sock, tmp_path / "via-vblk"))
    stop_process(qsd)
    assert digest(tmp_path / "via-vblk") == digest(image)


def test_vhost_iocd_multiqueue_and_read_only(iocd, tmp_path):
    image = make_image(tmp_path / "img", 16 * MiB)
    sock = tmp_path / "ro.sock"
    vhost_file_export(iocd, "ro", image, sock, nbd=False, num_queues=4, read_only=True)
    lst = iocd.rpc("vhost_blk_export_list")
    assert lst == [{"socket": str(sock), "bdev": "ro", "num_queues": 4, "read_only": True,
                    "connections": 0}]
    res, _ = perf("--socket", sock, "--rw", "randread", "--qd", "8", "--runtime", "0.5")
    assert res["errors"] == 0 and res["ios"] > 0
    res, p = perf("--socket", sock, "--rw", "randwrite", "--qd", "1", "--runtime", "0.5",
                  check=False)
    assert p.returncode != 0  # writes refused (-EROFS in libvblk)
