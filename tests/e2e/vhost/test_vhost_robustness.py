"""A client that puts out-of-range descriptors on its ring is refused (its
device is marked broken, nothing is touched), while iocd keeps serving
another client with verified IO. Garbage messages drop only their sender.
About 5 s."""
import socket
import struct
import time

from ioc_e2e import MiB
from vhost_util import RawVhost, make_image, perf, vhost_file_export, WRITE

GET_ID = 8


def test_vhost_out_of_range_descriptors_refused(iocd, tmp_path, procs):
    image = make_image(tmp_path / "img", 32 * MiB)
    sock = tmp_path / "vhost.sock"
    vhost_file_export(iocd, "v", image, sock, nbd=False)

    bad = RawVhost(sock)
    try:
        bad.setup()
        # the raw client is right: a valid GET_ID is served
        bad.request(GET_ID, 0, data_len=20)
        assert bad.wait_used(1), "valid GET_ID not completed"
        assert bad.mem[bad.STATUS] == 0
        assert bytes(bad.mem[bad.DATA:bad.DATA + 1]) == b"v"
        # data buffer far outside the memory table, then one straddling its end
        bad.request(0, 0, data_addr=0x7fff00000000)
        time.sleep(0.3)
        assert bad.used_idx() == 1, "out-of-range descriptor was completed"
        # the device is broken now: even a valid request is not taken
        bad.request(GET_ID, 0, data_len=20)
        time.sleep(0.3)
        assert bad.used_idx() == 1
        # meanwhile another client is served, with verify
        res, _ = perf("--socket", sock, "--rw", "randrw", "--qd", "8", "--runtime", "1",
                      "--size", "8MiB", "--verify")
        assert res["verify_errors"] == 0 and res["errors"] == 0 and res["ios"] > 0
    finally:
        bad.close()
    assert iocd.alive()
    assert "needs reset" in iocd.log_tail(200)


def test_vhost_straddling_and_looping_chains_refused(iocd, tmp_path):
    image = make_image(tmp_path / "img", 8 * MiB)
    sock = tmp_path / "vhost.sock"
    vhost_file_export(iocd, "v", image, sock, nbd=False)
    for kind in ("straddle", "loop", "next"):
        c = RawVhost(sock)
        try:
            c.setup()
            if kind == "straddle":
                c.request(0, 0, data_addr=c.BASE + c.SIZE - 512, data_len=4096)
            else:
                # the chain is broken before it is published (a target polling the
                # ring may take a published chain at once)
                c.request(0, 0, publish=False)
                if kind == "loop":
                    c.desc(2, c.BASE + c.STATUS, 1, WRITE | 1, 1)
                else:
                    c.desc(1, c.BASE + c.DATA, 4096, WRITE | 1, 99)
                c.publish()
            time.sleep(0.3)
            assert c.used_idx() == 0, kind
        finally:
            c.close()
    assert iocd.alive()
    res, _ = perf("--socket", sock, "--rw", "randread", "--qd", "4", "--runtime", "0.5")
    assert res["errors"] == 0 and res["ios"] > 0


def test_vhost_garbage_messages_drop_only_that_client(iocd, tmp_path):
    image = make_image(tmp_path / "img", 8 * MiB)
    sock = tmp_path / "vhost.sock"
    vhost_file_export(iocd, "v", image, sock, nbd=False)
    for payload in (b"\xff" * 64,                                   # unknown request, huge size
                    struct.pack("<III", 8, 1, 8) + b"\x00" * 8,     # SET_VRING_NUM num=0
                    struct.pack("<III", 5, 1, 40) + b"\x01" * 40):  # mem table without fds
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        s.connect(str(sock))
        s.sendall(payload)
        try:
            assert s.recv(100) == b""  # closed by iocd
        except ConnectionResetError:
            pass
        s.close()
    assert iocd.alive()
    res, _ = perf("--socket", sock, "--rw", "randread", "--qd", "4", "--runtime", "0.5")
    assert res["errors"] == 0 and res["ios"] > 0


def test_vhost_client_killed_with_io_in_flight(iocd, tmp_path, procs):
    """SIGKILL a client at QD32: its connection goes once its IO has drained."""
    import signal
    from vhost_util import vblk_perf
    image = make_image(tmp_path / "img", 32 * MiB)
    sock = tmp_path / "vhost.sock"
    vhost_file_export(iocd, "v", image, sock, nbd=False)
    for mode in ("busy", "eventfd"):
        p = procs.start([vblk_perf(), "--socket", sock, "--mode", mode, "--rw", "randrw",
                         "--qd", "32", "--runtime", "30"])
        time.sleep(1.0)
        assert p.poll() is None, p.stderr.read()
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    deadline = time.monotonic() + 5
    while iocd.rpc("vhost_blk_export_list")[0]["connections"] != 0:
        assert time.monotonic() < deadline, "connections of killed clients linger"
        time.sleep(0.05)
    res, _ = perf("--socket", sock, "--rw", "randrw", "--qd", "8", "--runtime", "0.5",
                  "--size", "8MiB", "--verify")
    assert res["verify_errors"] == 0 and res["errors"] == 0
    assert iocd.alive()
