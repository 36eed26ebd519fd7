"""The target parks its poller while bdev IO is in flight and wakes on the
completion (or a kick). With a slow bdev (the error bdev delaying every IO)
every request must still be served in every notification mode, at QD1 (the
client only submits after a completion) and at QD8 (the client may submit
while the target is parked, which must then kick). A lost wake-up shows up
as a hang (vblk-perf's timeout), never as a timing assertion."""
import pytest

from vhost_util import perf

MODES = ["eventfd", "busy", "adaptive"]


@pytest.mark.parametrize("qd", ["1", "8"])
def test_vhost_slow_bdev_all_modes_verify(iocd, tmp_path, qd):
    iocd.rpc("bdev_malloc_create", name="m", size="8MiB")
    iocd.rpc("bdev_error_create", name="e", base="m")
    iocd.rpc("bdev_error_inject", name="e", errno=0, delay_us=300)
    sock = tmp_path / "slow.sock"
    iocd.rpc("vhost_blk_export_add", socket=str(sock), bdev="e")
    for i, mode in enumerate(MODES):
        res, _ = perf("--socket", sock, "--mode", mode, "--rw", "randrw", "--qd", qd,
                      "--runtime", "0.7", "--size", "4MiB", "--verify", "--seed", str(i + 3),
                      timeout=60)
        assert res["verify_errors"] == 0 and res["errors"] == 0, res
        assert res["ios"] > 0, res
