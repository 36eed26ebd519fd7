"""Helpers for the vhost e2e tests: finding vblk-perf, exporting a file bdev
over vhost-user-blk (and NBD), starting qemu-storage-daemon, and a raw
vhost-user client in Python that can put hostile descriptors on a ring."""
import json
import mmap
import os
import socket
import struct
import subprocess
import time

import pytest

from ioc_e2e import BUILD, MiB, need, run, stop_process

QSD_PACKAGE = "qemu-system-common"


def vblk_perf():
    for p in (BUILD / "vblk-perf", BUILD / "tools" / "vblk-perf"):
        if p.exists():
            return p
    pytest.fail(f"vblk-perf missing in {BUILD}: run `make build`", pytrace=False)


def perf(*args, timeout=120, check=True):
    """Run vblk-perf with --json; returns (dict or None, CompletedProcess)."""
    p = run([vblk_perf(), "--json", *args], timeout=timeout, check=check)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    return (json.loads(lines[0]) if lines else None), p


def qsd_path():
    import shutil
    path = shutil.which("qemu-storage-daemon")
    if path is None:
        pytest.fail(f"qemu-storage-daemon not found: install the Debian package "
                    f"'{QSD_PACKAGE}' (scripts/deps.sh test does it)", pytrace=False)
    return path


def start_qsd(procs, image, sock, num_queues=1):
    cmd = [qsd_path(), "--blockdev",
           f"driver=file,node-name=f,filename={image},aio=io_uring,cache.direct=on",
           "--export", f"type=vhost-user-blk,id=v,node-name=f,addr.type=unix,"
           f"addr.path={sock},writable=on,num-queues={num_queues}"]
    p = procs.start(cmd)
    deadline = time.monotonic() + 10
    while not os.path.exists(sock):
        if p.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"qemu-storage-daemon did not start: {p.stderr.read()}",
                        pytrace=False)
        time.sleep(0.05)
    return p


def make_image(path, size=64 * MiB):
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def vhost_file_export(iocd, name, image, sock, nbd=True, **kw):
    iocd.rpc("bdev_file_create", name=name, path=str(image))
    iocd.rpc("vhost_blk_export_add", socket=str(sock), bdev=name, **kw)
    if nbd:
        iocd.rpc("nbd_export_add", name=name, bdev=name)
    return iocd.uri(name) if nbd else None


# ---- a raw vhost-user front end -------------------------------------------

GET_FEATURES, SET_FEATURES, SET_OWNER = 1, 2, 3
SET_MEM_TABLE, SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE = 5, 8, 9, 10
GET_VRING_BASE = 11
SET_VRING_KICK, SET_VRING_CALL = 12, 13
GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, SET_VRING_ENABLE = 15, 16, 18
F_VERSION_1, F_PROTOCOL = 1 << 32, 1 << 30
P_REPLY_ACK = 1 << 3
NEXT, WRITE = 1, 2


class RawVhost:
    """Drives one vring by hand. Memory: a 1 MiB memfd announced at BASE (the
    target only uses the number to translate, so any base works)."""
    BASE = 0x40000000
    SIZE = 1 * MiB
    QSIZE = 8
    DESC, AVAIL, USED, HDR, STATUS, DATA = 0, 0x1000, 0x2000, 0x3000, 0x3100, 0x4000

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(5)
        self.s.connect(str(path))
        self.memfd = os.memfd_create("rawvhost")
        os.ftruncate(self.memfd, self.SIZE)
        self.mem = mmap.mmap(self.memfd, self.SIZE)
        self.kick = os.eventfd(0, os.EFD_NONBLOCK)
        self.call = os.eventfd(0, os.EFD_NONBLOCK)
        self.avail_idx = 0

    def close(self):
        self.s.close()
        self.mem.close()
        for fd in (self.memfd, self.kick, self.call):
            os.close(fd)

    def _recv(self, n):
        b = b""
        while len(b) < n:
            chunk = self.s.recv(n - len(b))
            if not chunk:
                raise ConnectionError("vhost target closed the connection")
            b += chunk
        return b

    def msg(self, req, payload=b"", fds=(), ack=True, reply=False):
        flags = 1 | (8 if ack and not reply else 0)
        data = struct.pack("<III", req, flags, len(payload)) + payload
        if fds:
            socket.send_fds(self.s, [data], list(fds))
        else:
            self.s.sendall(data)
        if reply or ack:
            r, _f, size = struct.unpack("<III", self._recv(12))
            body = self._recv(size)
            assert r == req, f"reply to {r}, expected {req}"
            return body
        return None

    def u64(self, req, v, fds=()):
        body = self.msg(req, struct.pack("<Q", v), fds)
        assert struct.unpack("<Q", body)[0] == 0, f"request {req} refused"

    def setup(self, index=0):
        """Negotiate, share the memory and start vring `index` (the only one used)."""
        self.index = index
        feats = struct.unpack("<Q", self.msg(GET_FEATURES, reply=True))[0]
        assert feats & F_VERSION_1
        self.msg(GET_PROTOCOL_FEATURES, reply=True)
        self.msg(SET_PROTOCOL_FEATURES, struct.pack("<Q", P_REPLY_ACK), ack=False)
        self.u64(SET_FEATURES, F_VERSION_1 | F_PROTOCOL)
        self.mem_table()
        self.vring(0)

    def mem_table(self):
        region = struct.pack("<QQQQ", self.BASE, self.SIZE, self.BASE, 0)
        body = self.msg(SET_MEM_TABLE, struct.pack("<II", 1, 0) + region, [self.memfd])
        assert struct.unpack("<Q", body)[0] == 0

    def vring(self, base):
        """Set up and enable the vring, starting at avail/used index `base`."""
        i = self.index
        self.msg(SET_VRING_NUM, struct.pack("<II", i, self.QSIZE))
        self.msg(SET_VRING_BASE, struct.pack("<II", i, base))
        self.msg(SET_VRING_ADDR, struct.pack("<IIQQQQ", i, 0, self.BASE + self.DESC,
                                             self.BASE + self.USED, self.BASE + self.AVAIL, 0))
        self.u64(SET_VRING_CALL, i, [self.call])
        self.u64(SET_VRING_KICK, i, [self.kick])
        self.msg(SET_VRING_ENABLE, struct.pack("<II", i, 1))

    def get_vring_base(self):
        """Stop the vring; returns the avail index the target says to resume at."""
        body = self.msg(GET_VRING_BASE, struct.pack("<II", self.index, 0), reply=True)
        index, num = struct.unpack("<II", body)
        assert index == self.index
        return num

    def desc(self, i, addr, length, flags, nxt=0):
        struct.pack_into("<QIHH", self.mem, self.DESC + 16 * i, addr, length, flags, nxt)

    def request(self, rtype, sector, data_addr=None, data_len=4096, data_flags=WRITE,
                publish=True):
        """Write header / data / status descriptors; publish and kick unless
        publish=False (then change descriptors and call publish())."""
        struct.pack_into("<IIQ", self.mem, self.HDR, rtype, 0, sector)
        self.mem[self.STATUS] = 0xff
        self.desc(0, self.BASE + self.HDR, 16, NEXT, 1)
        self.desc(1, self.BASE + self.DATA if data_addr is None else data_addr, data_len,
                  data_flags | NEXT, 2)
        self.desc(2, self.BASE + self.STATUS, 1, WRITE)
        if publish:
            self.publish()

    def publish(self):
        """Put head 0 on the avail ring, publish the index and kick."""
        struct.pack_into("<H", self.mem, self.AVAIL + 4 + 2 * (self.avail_idx % self.QSIZE), 0)
        self.avail_idx += 1
        struct.pack_into("<H", self.mem, self.AVAIL + 2, self.avail_idx)
        os.eventfd_write(self.kick, 1)

    def used_idx(self):
        return struct.unpack_from("<H", self.mem, self.USED + 2)[0]

    def wait_used(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.used_idx() >= n:
                return True
            time.sleep(0.01)
        return False
