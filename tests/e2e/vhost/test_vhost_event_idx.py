"""VIRTIO_RING_F_EVENT_IDX end to end: vblk-perf --verify in every notification
mode, with EVENT_IDX negotiated and with --no-event-idx (ring flags), against
iocd with one queue, iocd --cores 2 with two queues driven at once, and
qemu-storage-daemon (which offers EVENT_IDX too). With EVENT_IDX the backend
signals only when the used index passes the client's used_event, which the
client sets before each sleep ("arms"; the recheck after arming may find
work and skip the sleep, while the backend has already signalled); so the
call signals it consumes cannot outnumber its arms times the queues (plus
one per 65536 completions, when an old event index is passed again after a
wrap). About 30 s."""
import pytest

from ioc_e2e import MiB
from vhost_util import make_image, perf, start_qsd, vhost_file_export

MODES = ["eventfd", "busy", "adaptive"]


def run_matrix(sock, queues=1):
    for event_idx in (True, False):
        for i, mode in enumerate(MODES):
            args = ["--socket", sock, "--mode", mode, "--rw", "randrw", "--qd", "16",
                    "--queues", str(queues), "--runtime", "0.7", "--size", "8MiB",
                    "--verify", "--seed", str(i + 3)]
            if not event_idx:
                args.append("--no-event-idx")
            res, _ = perf(*args)
            what = f"{mode}, event_idx={event_idx}: {res}"
            assert res["errors"] == 0 and res["verify_errors"] == 0, what
            assert res["ios"] > 0 and res["queues"] == queues, what
            assert res["event_idx"] is event_idx, what
            if mode == "busy":
                assert res["sleeps"] == 0, what
            if mode == "eventfd":
                assert res["sleeps"] > 0 and res["calls"] > 0, what
            if event_idx:
                # one arming of a set arms every queue's used_event
                assert res["arms"] >= res["sleeps"], what
                bound = (res["arms"] + res["ios"] // 65536 + 2) * queues
                assert res["calls"] <= bound, what


def test_event_idx_iocd_one_queue(iocd, tmp_path):
    image = make_image(tmp_path / "img", 16 * MiB)
    sock = tmp_path / "v.sock"
    vhost_file_export(iocd, "v", image, sock, nbd=False)
    run_matrix(sock)


def test_event_idx_iocd_two_queues_two_cores(make_iocd, tmp_path):
    iocd = make_iocd("--cores", "2")
    image = make_image(tmp_path / "img", 16 * MiB)
    sock = tmp_path / "v2.sock"
    vhost_file_export(iocd, "v2", image, sock, nbd=False, num_queues=2)
    run_matrix(sock, queues=2)


@pytest.mark.slow
def test_event_idx_qsd(tmp_path, procs):
    image = make_image(tmp_path / "img", 16 * MiB)
    sock = str(tmp_path / "qsd.sock")
    start_qsd(procs, image, sock, num_queues=2)
    run_matrix(sock)
    run_matrix(sock, queues=2)
