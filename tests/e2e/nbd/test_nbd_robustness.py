"""Robustness: killed clients, connection churn, and hostile bytes on the wire."""
import errno
import os
import signal
import socket
import struct
import time

import pytest

from ioc_e2e import (MiB, NBD_CMD_READ, NBD_OPT_ABORT, NBD_OPTS_MAGIC,
                     NBD_REQUEST_MAGIC, NbdClient, NbdError, need, proc_fd_count,
                     proc_rss_kib, qemu_io, recv_exact)


def connections(iocd, export):
    for e in iocd.rpc("nbd_export_list"):
        if e["name"] == export:
            return e["connections"]
    raise AssertionError(f"export {export} not listed")


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def settled_fd_count(pid, target=None, timeout=10.0):
    """The fd count once it stops changing (or reaches target)."""
    deadline = time.monotonic() + timeout
    last = proc_fd_count(pid)
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        n = proc_fd_count(pid)
        if target is not None and n <= target:
            return n
        if n != last:
            last, stable_since = n, time.monotonic()
        elif target is None and time.monotonic() - stable_since > 0.5:
            return n
    return proc_fd_count(pid)


def expect_closed(s, timeout=5.0):
    """Read until the server closes; fail if it keeps the connection open."""
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not s.recv(65536):
                return
    except ConnectionResetError:
        return
    except socket.timeout:
        pass
    pytest.fail("iocd kept a connection open after a protocol violation")


def greet(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    magic = recv_exact(s, 18)
    assert magic[:8] == b"NBDMAGIC"
    return s


def check_serving(iocd, export="v"):
    assert iocd.alive(), "iocd died"
    c = NbdClient(iocd.port, export)
    try:
        data = os.urandom(4096)
        assert c.write(15 * MiB, data) == 0
        assert c.read(15 * MiB, 4096) == data
    finally:
        c.close()


def test_nbd_robustness_kill9_client(iocd, procs):
    fio = need("fio")
    uri = iocd.malloc_export("v", size="64MiB")
    p = procs.start([fio, "--name=k", "--ioengine=nbd", f"--uri={uri}", "--thread",
                     "--rw=randrw", "--bs=4k", "--bssplit=4k/50:1m/50", "--iodepth=32",
                     "--numjobs=2", "--time_based", "--runtime=60", "--size=64M"])
    wait_for(lambda: connections(iocd, "v") == 2 or p.poll() is not None,
             what="two fio connections")
    assert p.poll() is None, f"fio exited early: {p.stderr.read().decode()}"
    time.sleep(1.0)   # let IO flow
    os.kill(p.pid, signal.SIGKILL)
    p.wait(10)
    wait_for(lambda: connections(iocd, "v") == 0, what="iocd to drop the dead connections")
    qemu_io(uri, "write -P 0x3c 0 1M", "read -P 0x3c 0 1M")

    # a client that dies mid-request: half a write payload, then RST
    c = NbdClient(iocd.port, "v")
    c.s.sendall(struct.pack(">IHHQQI", NBD_REQUEST_MAGIC, 0, 1, 1, 0, 1 * MiB)
                + os.urandom(300000))
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.s.close()
    # a client that dies with many reads in flight and never reads the replies
    c = NbdClient(iocd.port, "v")
    for i in range(64):
        c.send(NBD_CMD_READ, i * MiB % (63 * MiB), 1 * MiB)
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.s.close()
    wait_for(lambda: connections(iocd, "v") == 0, what="connections to drain")
    check_serving(iocd)
    qemu_io(uri, "read -P 0x3c 0 1M")


def cycle(iocd, i):
    kind = i % 4
    if kind == 0:                     # full handshake, NBD_CMD_DISC
        NbdClient(iocd.port, "v").close()
    elif kind == 1:                   # close right after the greeting
        greet(iocd.port).close()
    elif kind == 2:                   # NBD_OPT_ABORT
        s = greet(iocd.port)
        s.sendall(struct.pack(">I", 1) + struct.pack(">QII", NBD_OPTS_MAGIC, NBD_OPT_ABORT, 0))
        expect_closed(s)
        s.close()
    else:                             # handshake, a read in flight, then RST
        c = NbdClient(iocd.port, "v")
        c.send(NBD_CMD_READ, 0, 65536)
        c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.s.close()


def test_nbd_robustness_connect_disconnect_100(iocd):
    iocd.malloc_export("v", size="64MiB")
    for i in range(8):                # warm up buffer pools and the like
        cycle(iocd, i)
    wait_for(lambda: connections(iocd, "v") == 0, what="warm-up connections to close")
    fds0 = settled_fd_count(iocd.pid)
    rss0 = proc_rss_kib(iocd.pid)
    for i in range(100):
        cycle(iocd, i)
    wait_for(lambda: connections(iocd, "v") == 0, what="connections to close")
    fds1 = settled_fd_count(iocd.pid, target=fds0)
    rss1 = proc_rss_kib(iocd.pid)
    assert fds1 <= fds0, f"fd leak: {fds0} open fds before 100 connections, {fds1} after: " \
                         f"{sorted(os.listdir(f'/proc/{iocd.pid}/fd'))}"
    assert rss1 - rss0 < 8 * 1024, f"RSS grew from {rss0} KiB to {rss1} KiB over 100 connections"
    check_serving(iocd)


def test_nbd_robustness_nbdinfo_churn(iocd):
    """The same with a real client: 30 nbdinfo runs (which also list meta contexts)."""
    iocd.malloc_export("v", size="8MiB")
    nbdinfo = need("nbdinfo")
    import subprocess
    subprocess.run([nbdinfo, iocd.uri("v")], capture_output=True, timeout=30)
    fds0 = settled_fd_count(iocd.pid)
    for _ in range(30):
        p = subprocess.run([nbdinfo, "--map", iocd.uri("v")], capture_output=True, timeout=30)
        assert p.returncode == 0, p.stderr
    fds1 = settled_fd_count(iocd.pid, target=fds0)
    assert fds1 <= fds0, f"fd leak: {fds0} -> {fds1}"


HOSTILE = {
    # before the client flags: junk with every flag bit set
    "garbage_flags": lambda s: s.sendall(b"\xff" * 4 + os.urandom(60)),
    # valid flags, then an option with a wrong magic
    "wrong_option_magic": lambda s: s.sendall(struct.pack(">I", 1) + b"NOTMAGIC"
                                              + struct.pack(">II", 7, 0)),
    # valid flags, half an option header, then EOF
    "truncated_option": lambda s: (s.sendall(struct.pack(">I", 1) + b"IHAVEOPT\x00\x00"),
                                   s.shutdown(socket.SHUT_WR)),
    # an option claiming a 4 GiB payload
    "huge_option": lambda s: s.sendall(struct.pack(">I", 1) + struct.pack(
        ">QII", NBD_OPTS_MAGIC, 7, 0xFFFFFFFF) + os.urandom(1000)),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_nbd_robustness_hostile_handshake(iocd, case):
    iocd.malloc_export("v", size="16MiB")
    fds0 = settled_fd_count(iocd.pid)
    s = greet(iocd.port)
    HOSTILE[case](s)
    expect_closed(s)
    s.close()
    check_serving(iocd)
    assert settled_fd_count(iocd.pid, target=fds0) <= fds0


def test_nbd_robustness_bad_option_then_go(iocd):
    """A malformed option gets NBD_REP_ERR_INVALID; the handshake can go on."""
    iocd.malloc_export("v", size="16MiB")
    s = greet(iocd.port)
    s.sendall(struct.pack(">I", 1) + struct.pack(">QII", NBD_OPTS_MAGIC, 7, 10)
              + struct.pack(">I", 1000) + b"v" + b"\0" * 5)   # name longer than option
    magic, opt, rtype, length = struct.unpack(">QIII", recv_exact(s, 20))
    recv_exact(s, length)
    assert (opt, rtype) == (7, (1 << 31) + 3), f"reply {rtype:#x} to option {opt}"
    # an unknown option gets NBD_REP_ERR_UNSUP
    s.sendall(struct.pack(">QII", NBD_OPTS_MAGIC, 4242, 3) + b"abc")
    magic, opt, rtype, length = struct.unpack(">QIII", recv_exact(s, 20))
    recv_exact(s, length)
    assert (opt, rtype) == (4242, (1 << 31) + 1), f"reply {rtype:#x} to option {opt}"
    # NBD_OPT_GO for an unknown export: NBD_REP_ERR_UNKNOWN
    s.sendall(struct.pack(">QII", NBD_OPTS_MAGIC, 7, 4 + 5 + 2) + struct.pack(">I", 5)
              + b"nosuc" + b"\0\0")
    magic, opt, rtype, length = struct.unpack(">QIII", recv_exact(s, 20))
    recv_exact(s, length)
    assert (opt, rtype) == (7, (1 << 31) + 6), f"reply {rtype:#x} to GO of an unknown export"
    # then a good NBD_OPT_GO on the same connection
    s.sendall(struct.pack(">QII", NBD_OPTS_MAGIC, 7, 4 + 1 + 2) + struct.pack(">I", 1)
              + b"v" + b"\0\0")
    while True:
        magic, opt, rtype, length = struct.unpack(">QIII", recv_exact(s, 20))
        recv_exact(s, length)
        assert rtype < (1 << 31), f"NBD_OPT_GO failed: {rtype:#x}"
        if rtype == 1:
            break
    s.sendall(struct.pack(">IHHQQI", NBD_REQUEST_MAGIC, 0, NBD_CMD_READ, 5, 0, 4096))
    err, handle = struct.unpack(">4xIQ", recv_exact(s, 16))
    assert (err, handle) == (0, 5)
    assert recv_exact(s, 4096) == bytes(4096)
    s.close()
    check_serving(iocd)


def test_nbd_robustness_garbage_before_greeting(iocd):
    iocd.malloc_export("v", size="16MiB")
    s = socket.create_connection(("127.0.0.1", iocd.port), timeout=5)
    try:
        s.sendall(os.urandom(256 * 1024))
    except (BrokenPipeError, ConnectionResetError):
        pass
    expect_closed(s)
    s.close()
    check_serving(iocd)


def test_nbd_robustness_stalled_handshake_does_not_block(iocd):
    """A client stuck mid-handshake does not hold up other clients."""
    iocd.malloc_export("v", size="16MiB")
    stuck = greet(iocd.port)
    stuck.sendall(struct.pack(">I", 1) + b"IHAV")
    stuck2 = socket.create_connection(("127.0.0.1", iocd.port), timeout=5)  # never reads
    try:
        check_serving(iocd)
        qemu_io(iocd.uri("v"), "write -P 9 0 64k", "read -P 9 0 64k")
    finally:
        stuck.close()
        stuck2.close()


def test_nbd_robustness_transmission_errors(iocd):
    iocd.malloc_export("v", size="16MiB")
    c = NbdClient(iocd.port, "v")
    try:
        # out of range, unaligned and unknown commands get EINVAL, the connection lives
        assert c.cmd(NBD_CMD_READ, 16 * MiB, 4096)[0] == errno.EINVAL
        assert c.cmd(NBD_CMD_READ, 16 * MiB - 4096, 8192)[0] == errno.EINVAL
        assert c.cmd(NBD_CMD_READ, 2**63, 4096)[0] == errno.EINVAL
        # writes past the end: ENOSPC (the spec says SHOULD), EINVAL also allowed
        assert c.write(2**64 - 512, b"z" * 4096) in (errno.ENOSPC, errno.EINVAL)
        assert c.write(16 * MiB, b"z" * 4096) in (errno.ENOSPC, errno.EINVAL)
        assert c.cmd(NBD_CMD_READ, 100, 512)[0] == errno.EINVAL
        assert c.cmd(99, 0, 0)[0] == errno.EINVAL
        data = os.urandom(4096)
        assert c.write(0, data) == 0
        assert c.read(0, 4096) == data
        # a request with a wrong magic closes the connection
        c.s.sendall(struct.pack(">IHHQQI", 0xDEADBEEF, 0, 0, 7, 0, 4096))
        expect_closed(c.s)
    finally:
        c.s.close()
    # a write announcing more than the 32 MiB payload limit is refused
    c = NbdClient(iocd.port, "v")
    try:
        c.s.sendall(struct.pack(">IHHQQI", NBD_REQUEST_MAGIC, 0, 1, 1, 0, 64 * MiB))
        try:
            err, _, _ = c.reply()
            assert err != 0, "a 64 MiB write was accepted by a 16 MiB export"
        except (NbdError, ConnectionResetError):
            pass                      # closing the connection is fine too
    finally:
        c.s.close()
    check_serving(iocd)
