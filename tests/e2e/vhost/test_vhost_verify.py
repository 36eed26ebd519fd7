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
    # the written (so cached) part was read from the file bdev's mapping
    (bdev,) = [b for b in iocd.rpc("bdev_list") if b["name"] == "v"]
    assert bdev["reads_mapped"] > 0, bdev


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
    # the last of the four queues (the client negotiates all four)
    res, _ = perf("--socket", sock, "--queue", "3", "--rw", "randread", "--qd", "8",
                  "--runtime", "0.5")
    assert res["errors"] == 0 and res["ios"] > 0
    _, p = perf("--socket", sock, "--queue", "4", "--runtime", "0.2", check=False)
    assert p.returncode != 0 and "has 4 queue(s)" in p.stderr
    # all four queues of one connection, on this one-reactor iocd
    res, _ = perf("--socket", sock, "--queues", "4", "--rw", "randread", "--qd", "16",
                  "--runtime", "0.5")
    assert res["errors"] == 0 and res["ios"] > 0 and res["queues"] == 4


def test_vhost_multiqueue_verify_iocd_and_qsd(iocd, tmp_path, procs):
    """Queue 1 of a 2-queue export, with verify, on iocd and on qemu-storage-daemon."""
    image = make_image(tmp_path / "img", 16 * MiB)
    sock = tmp_path / "mq.sock"
    vhost_file_export(iocd, "mq", image, sock, nbd=False, num_queues=2)
    res, _ = perf("--socket", sock, "--queue", "1", "--rw", "randrw", "--qd", "8",
                  "--runtime", "0.5", "--size", "4MiB", "--verify")
    assert res["verify_errors"] == 0 and res["errors"] == 0
    qimg = make_image(tmp_path / "qimg", 16 * MiB)
    qsock = str(tmp_path / "qsd.sock")
    start_qsd(procs, qimg, qsock, num_queues=2)
    res, _ = perf("--socket", qsock, "--queue", "1", "--rw", "randrw", "--qd", "8",
                  "--runtime", "0.5", "--size", "4MiB", "--verify")
    assert res["verify_errors"] == 0 and res["errors"] == 0


def test_vhost_two_reactors_two_clients(make_iocd, tmp_path, procs):
    """iocd --cores 2: two clients at once (placed on both reactors), each on its
    own export (verify assumes one writer per block), both verified."""
    from vhost_util import vblk_perf
    iocd = make_iocd("--cores", "2")
    ps = []
    for i in range(2):
        image = make_image(tmp_path / f"img{i}", 16 * MiB)
        sock = tmp_path / f"vhost{i}.sock"
        vhost_file_export(iocd, f"v{i}", image, sock, nbd=False)
        ps.append(procs.start([vblk_perf(), "--socket", sock, "--rw", "randrw", "--qd", "8",
                               "--runtime", "1", "--size", "8MiB", "--verify"]))
    for p in ps:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
