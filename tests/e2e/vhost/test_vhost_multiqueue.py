"""Queues of one vhost-user connection on several reactors (iocd --cores 2):
vblk-perf --queues 2 and 4 with verify in every notification mode, the data
read back through NBD; a raw client stopping (GET_VRING_BASE), restarting and
re-sharing its memory while its queue runs on the other reactor; clients
killed and reconnected while their queues run on two reactors (iocd keeps
serving, its fd count comes back); libvblk --queues 2 against
qemu-storage-daemon with num-queues=2. About 40 s."""
import hashlib
import re
import signal
import time

import pytest

from ioc_e2e import MiB, need, proc_fd_count, run, stop_process
from vhost_util import (RawVhost, make_image, perf, start_qsd, vblk_perf,
                        vhost_file_export)

MODES = ["eventfd", "busy", "adaptive"]
GET_ID = 8


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def iocd_two_cores(make_iocd):
    # debug log of the vhost target: it names the reactor each queue runs on
    return make_iocd("--cores", "2", "--log-level", "debug", "--debug", "vhost")


def queue_placements(iocd):
    """[(connection reactor, queue, queue reactor)] from the log, in order."""
    conn, out = {}, []
    for line in iocd.log_path.read_text(errors="replace").splitlines():
        m = re.search(r"#(\d+): connected on reactor (\d+)", line)
        if m:
            conn[m.group(1)] = int(m.group(2))
        m = re.search(r"#(\d+): queue (\d+) running on reactor (\d+)", line)
        if m:
            out.append((conn[m.group(1)], int(m.group(2)), int(m.group(3))))
    return out


def assert_round_robin(iocd, queues):
    placed = queue_placements(iocd)
    assert placed, "no queue started (log)"
    for creactor, q, qreactor in placed:
        assert qreactor == (creactor + q) % 2, placed
    assert {q for _, q, _ in placed} >= set(range(queues)), placed
    assert {r for _, _, r in placed} == {0, 1}, "queues did not use both reactors"


def wait_conns(iocd, n, timeout=10):
    deadline = time.monotonic() + timeout
    while iocd.rpc("vhost_blk_export_list")[0]["connections"] != n:
        assert time.monotonic() < deadline, "connections linger"
        time.sleep(0.05)


@pytest.mark.slow
def test_vhost_queues_on_two_reactors_all_modes_then_nbd(make_iocd, tmp_path):
    iocd = iocd_two_cores(make_iocd)
    image = make_image(tmp_path / "img", 64 * MiB)
    sock = tmp_path / "vhost.sock"
    uri = vhost_file_export(iocd, "v", image, sock, num_queues=4)
    seed = 1
    for nq in (2, 4):
        for mode in MODES:
            res, _ = perf("--socket", sock, "--queues", str(nq), "--mode", mode, "--rw",
                          "randrw", "--qd", "16", "--runtime", "1", "--size", "16MiB",
                          "--verify", "--seed", str(seed))
            seed += 1
            assert res["queues"] == nq, res
            assert res["verify_errors"] == 0 and res["errors"] == 0 and res["ios"] > 0, res
    assert_round_robin(iocd, 4)
    run([need("nbdcopy"), uri, tmp_path / "via-nbd"])
    run([vblk_perf(), "--socket", sock, "--dump", tmp_path / "via-vblk"])
    assert digest(tmp_path / "via-nbd") == digest(tmp_path / "via-vblk")


def test_vhost_vring_stop_restart_and_mem_table_on_other_reactor(make_iocd, tmp_path):
    """Queue 1 runs on the reactor after the connection's: GET_VRING_BASE stops
    and drains it there before answering, a request published while stopped
    waits, a restart at the returned base serves it, and a new memory table
    with the queue running (stop, remap, restart) keeps it serving."""
    iocd = iocd_two_cores(make_iocd)
    image = make_image(tmp_path / "img", 8 * MiB)
    sock = tmp_path / "vhost.sock"
    vhost_file_export(iocd, "v", image, sock, nbd=False, num_queues=2)
    time.sleep(0.3)
    fds0 = proc_fd_count(iocd.pid)
    c = RawVhost(sock)
    try:
        c.setup(index=1)
        c.request(GET_ID, 0, data_len=20)
        assert c.wait_used(1), "GET_ID on queue 1 not completed"
        assert c.mem[c.STATUS] == 0 and bytes(c.mem[c.DATA:c.DATA + 1]) == b"v"
        placed = queue_placements(iocd)
        assert placed and placed[-1][1] == 1 and placed[-1][2] == (placed[-1][0] + 1) % 2, placed
        assert c.get_vring_base() == 1
        c.request(GET_ID, 0, data_len=20)      # published while the ring is stopped
        time.sleep(0.3)
        assert c.used_idx() == 1, "a stopped ring was served"
        c.vring(1)                             # restart where the target said
        assert c.wait_used(2), "request published while stopped not served after restart"
        c.mem_table()                          # replaced while the queue runs
        c.request(GET_ID, 0, data_len=20)
        assert c.wait_used(3), "not served after a new memory table"
        assert c.mem[c.STATUS] == 0
    finally:
        c.close()
    # started, restarted after GET_VRING_BASE, restarted after SET_MEM_TABLE
    assert [q for _, q, _ in queue_placements(iocd)] == [1, 1, 1]
    wait_conns(iocd, 0)
    assert iocd.alive()
    deadline = time.monotonic() + 5
    while proc_fd_count(iocd.pid) != fds0:
        assert time.monotonic() < deadline, f"fds {proc_fd_count(iocd.pid)} != {fds0}"
        time.sleep(0.05)


def test_vhost_clients_killed_and_reconnected_across_reactors(make_iocd, tmp_path, procs):
    iocd = make_iocd("--cores", "2")
    image = make_image(tmp_path / "img", 32 * MiB)
    sock = tmp_path / "vhost.sock"
    vhost_file_export(iocd, "v", image, sock, nbd=False, num_queues=2)
    time.sleep(0.3)
    fds0 = proc_fd_count(iocd.pid)
    for i in range(6):
        mode = MODES[i % 3]
        if i % 2 == 0:  # killed at QD32 with IO in flight on both reactors
            p = procs.start([vblk_perf(), "--socket", sock, "--queues", "2", "--mode", mode,
                             "--rw", "randrw", "--qd", "32", "--runtime", "30"])
            time.sleep(0.7)
            assert p.poll() is None, p.stderr.read()
            p.send_signal(signal.SIGKILL)
            p.wait(10)
        else:           # runs to the end and disconnects cleanly
            res, _ = perf("--socket", sock, "--queues", "2", "--mode", mode, "--rw", "randrw",
                          "--qd", "32", "--runtime", "0.5")
            assert res["errors"] == 0 and res["ios"] > 0, res
    wait_conns(iocd, 0)
    deadline = time.monotonic() + 5
    while proc_fd_count(iocd.pid) != fds0:
        assert time.monotonic() < deadline, f"fds {proc_fd_count(iocd.pid)} != {fds0}"
        time.sleep(0.05)
    res, _ = perf("--socket", sock, "--queues", "2", "--rw", "randrw", "--qd", "16",
                  "--runtime", "0.5", "--size", "8MiB", "--verify")
    assert res["verify_errors"] == 0 and res["errors"] == 0 and res["ios"] > 0
    # an export removed under a connected two-queue client
    client = procs.start([vblk_perf(), "--socket", sock, "--queues", "2", "--rw", "randread",
                          "--qd", "8", "--runtime", "0.3", "--idle", "20"])
    wait_conns(iocd, 1)
    time.sleep(0.5)
    iocd.rpc("vhost_blk_export_remove", socket=str(sock))
    assert iocd.rpc("vhost_blk_export_list") == []
    stop_process(client)
    iocd.rpc("bdev_delete", name="v")
    assert iocd.alive()


@pytest.mark.slow
def test_vhost_qsd_two_queues_all_modes(tmp_path, procs):
    image = make_image(tmp_path / "img", 64 * MiB)
    sock = str(tmp_path / "qsd.sock")
    qsd = start_qsd(procs, image, sock, num_queues=2)
    for i, mode in enumerate(MODES):
        res, _ = perf("--socket", sock, "--queues", "2", "--mode", mode, "--rw", "randrw",
                      "--qd", "16", "--runtime", "1", "--size", "16MiB", "--verify",
                      "--seed", str(i + 11))
        assert res["queues"] == 2, res
        assert res["verify_errors"] == 0 and res["errors"] == 0 and res["ios"] > 0, res
    run([vblk_perf(), "--socket", sock, "--dump", tmp_path / "via-vblk"])
    stop_process(qsd)
    assert digest(tmp_path / "via-vblk") == digest(image)
