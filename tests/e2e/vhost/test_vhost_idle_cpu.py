"""A connected but idle libvblk client costs iocd < 1% of a core over 10 s:
the vhost poller unregisters itself once the rings stay empty and the
reactor sleeps on the kick eventfds. About 13 s."""
import time

import pytest

from ioc_e2e import MiB, proc_cpu_seconds
from vhost_util import make_image, vblk_perf, vhost_file_export

WINDOW = 10.0
LIMIT = 0.01


@pytest.mark.slow
def test_vhost_idle_cpu_connected_client(iocd, tmp_path, procs):
    image = make_image(tmp_path / "img", 16 * MiB)
    sock = tmp_path / "vhost.sock"
    vhost_file_export(iocd, "v", image, sock, nbd=False)
    client = procs.start([vblk_perf(), "--socket", sock, "--mode", "adaptive", "--rw",
                          "randread", "--qd", "4", "--runtime", "0.5", "--idle", "30"])
    time.sleep(1.5)  # the IO burst is over; the client stays connected
    assert client.poll() is None, client.stderr.read()
    assert iocd.rpc("vhost_blk_export_list")[0]["connections"] == 1
    c0, t0 = proc_cpu_seconds(iocd.pid), time.monotonic()
    time.sleep(WINDOW)
    frac = (proc_cpu_seconds(iocd.pid) - c0) / (time.monotonic() - t0)
    assert client.poll() is None
    assert frac < LIMIT, f"iocd with an idle vhost client used {frac:.1%} of a core"
