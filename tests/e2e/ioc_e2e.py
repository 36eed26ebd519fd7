"""Helpers shared by the end-to-end tests: the iocd handle, client lookup,
subprocess runners, /proc readers and a minimal raw NBD client.

The fixtures that use these live in conftest.py; tests import this module
for the helpers that are not fixtures (`from ioc_e2e import ...`), which
works because pytest puts tests/e2e on sys.path when it loads conftest.py.
"""
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("IOC_BUILD", ROOT / "build")).resolve()

MiB = 1 << 20
GiB = 1 << 30

# Which Debian package ships each client we drive (scripts/deps.sh test).
PACKAGES = {
    "qemu-img": "qemu-utils",
    "qemu-io": "qemu-utils",
    "qemu-nbd": "qemu-utils",
    "nbdinfo": "libnbd-bin",
    "nbdcopy": "libnbd-bin",
    "nbdfuse": "libnbd-bin",
    "fusermount3": "fuse3",
    "fio": "fio",
    "fincore": "util-linux",
    "iscsi-test-cu": "libiscsi-bin",
    "iscsi-ls": "libiscsi-bin",
    "iscsi-inq": "libiscsi-bin",
    "iscsi-perf": "libiscsi-bin",
    "iscsi-readcapacity16": "libiscsi-bin",
    "tgtd": "tgt",
    "tgtadm": "tgt",
}


class E2EFailure(Exception):
    """Raised by helpers; conftest turns it into pytest.fail."""


def need(tool):
    """Path of a client binary, or a failure naming the package to install."""
    import pytest

    path = shutil.which(tool)
    if path is None:
        pkg = PACKAGES.get(tool, "?")
        pytest.fail(f"{tool} not found: install the Debian package '{pkg}' "
                    f"(scripts/deps.sh test does it)", pytrace=False)
    return path


def run(cmd, timeout=120, check=True, input=None, env=None):
    """Run a client to completion; on check and a non-zero exit, fail with its output."""
    import pytest

    cmd = [str(c) for c in cmd]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           input=input, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"timed out after {timeout}s: {' '.join(cmd)}\n"
                    f"stdout: {e.stdout}\nstderr: {e.stderr}", pytrace=False)
    if check and p.returncode != 0:
        pytest.fail(f"exit {p.returncode}: {' '.join(cmd)}\n"
                    f"stdout: {p.stdout[-4000:]}\nstderr: {p.stderr[-4000:]}",
                    pytrace=False)
    return p


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MiB)
            if not b:
                return h.hexdigest()
            h.update(b)


def random_image(path, size, zero_regions=()):
    """Write size bytes of random data, with the (offset, length) regions zeroed."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 4 * MiB)
            f.write(os.urandom(n))
            left -= n
        for off, length in zero_regions:
            f.seek(off)
            f.write(bytes(length))
    return path


# ---- /proc readers -------------------------------------------------------

def proc_cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime and stime are fields 14 and 15
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def proc_fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise E2EFailure(f"no VmRSS for pid {pid}")


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_process(proc, timeout=10.0):
    """SIGTERM then SIGKILL a Popen by PID; returns its exit status."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


# ---- iocd ----------------------------------------------------------------

class RpcError(Exception):
    def __init__(self, method, error):
        self.method = method
        self.code = error.get("code")
        self.message = error.get("message", "")
        super().__init__(f"{method}: JSON-RPC error {self.code}: {self.message}")


class Iocd:
    """A running iocd: its process, sockets and log, plus RPC helpers."""

    def __init__(self, workdir, args=()):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sock = str(self.workdir / "iocd.sock")
        self.nbd_sock = str(self.workdir / "nbd.sock")
        self.log_path = self.workdir / "iocd.log"
        self.binary = BUILD / "iocd"
        self.iocctl_bin = BUILD / "iocctl"
        self.extra_args = list(args)
        self.proc = None
        self.port = None
        self.stopped = False   # stop() was called: teardown has nothing to check
        self._id = 0

    # lifecycle
    def start(self, timeout=10.0):
        import pytest

        if not self.binary.exists():
            pytest.fail(f"{self.binary} missing: run `make build` "
                        f"(or set IOC_BUILD)", pytrace=False)
        for _attempt in range(3):
            self.port = free_port()
            cmd = [str(self.binary), "--rpc-socket", self.sock,
                   "--nbd-listen", f"127.0.0.1:{self.port}",
                   "--nbd-socket", self.nbd_sock,
                   *self._iscsi_default(),
                   "--log-level", "info", *self.extra_args]
            self.log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=self.log, stderr=self.log)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    self.rpc("rpc_get_methods", _timeout=1.0)
                    return self
                except (OSError, RpcError, ValueError):
                    time.sleep(0.05)
            if self.proc.poll() is None:
                stop_process(self.proc)
                pytest.fail(f"iocd did not answer rpc_get_methods within "
                            f"{timeout}s\n{self.log_tail()}", pytrace=False)
            if "in use" not in self.log_tail():
                break
        pytest.fail(f"iocd exited with status {self.proc.returncode} at "
                    f"startup\n{self.log_tail()}", pytrace=False)

    def _iscsi_default(self):
        """Several iocd run at once: no iSCSI port unless the test asks for one."""
        if any(a.startswith("--iscsi-listen") for a in self.extra_args):
            return []
        return ["--iscsi-listen", "none"]

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10.0):
        """SIGTERM by PID, SIGKILL after timeout. Returns (status, killed)."""
        if self.proc is None:
            return 0, False
        self.stopped = True
        killed = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                killed = True
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        return self.proc.returncode, killed

    def log_tail(self, n=60):
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "---- iocd log (last %d lines) ----\n%s" % (n, "\n".join(lines[-n:]))

    # RPC
    def rpc(self, method, _timeout=30.0, **params):
        """Call a JSON-RPC method; returns result, raises RpcError on error."""
        self._id += 1
        req = {"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(_timeout)
            s.connect(self.sock)
            s.sendall((json.dumps(req) + "\n").encode())
            buf = b""
            dec = json.JSONDecoder()
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError(f"{method}: iocd closed the RPC connection")
                buf += chunk
                try:
                    resp, _ = dec.raw_decode(buf.decode().lstrip())
                    break
                except ValueError:
                    continue
        if "error" in resp:
            raise RpcError(method, resp["error"])
        return resp["result"]

    def iocctl(self, *args, check=True, timeout=30):
        import pytest

        if not self.iocctl_bin.exists():
            pytest.fail(f"{self.iocctl_bin} missing: run `make build`", pytrace=False)
        return run([self.iocctl_bin, "-s", self.sock, *args], check=check,
                   timeout=timeout)

    # conveniences
    def uri(self, export, unix=False):
        if unix:
            return f"nbd+unix:///{export}?socket={self.nbd_sock}"
        return f"nbd://127.0.0.1:{self.port}/{export}"

    def malloc_export(self, name, size="64MiB", read_only=False, **kw):
        self.rpc("bdev_malloc_create", name=name, size=size, **kw)
        self.rpc("nbd_export_add", name=name, bdev=name, read_only=read_only)
        return self.uri(name)

    def file_export(self, name, path, size=None, read_only=False, **kw):
        params = dict(name=name, path=str(path), **kw)
        if size is not None:
            params["size"] = size
        self.rpc("bdev_file_create", **params)
        self.rpc("nbd_export_add", name=name, bdev=name, read_only=read_only)
        return self.uri(name)


# ---- a minimal NBD client (fixed newstyle, simple replies) ---------------

NBD_MAGIC = 0x4E42444D41474943
NBD_OPTS_MAGIC = 0x49484156454F5054
NBD_REP_MAGIC = 0x0003E889045565A9
NBD_REQUEST_MAGIC = 0x25609513
NBD_SIMPLE_REPLY_MAGIC = 0x67446698
NBD_OPT_ABORT = 2
NBD_OPT_GO = 7
NBD_REP_ACK = 1
NBD_REP_INFO = 3
NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_DISC, NBD_CMD_FLUSH = 0, 1, 2, 3
NBD_CMD_TRIM, NBD_CMD_WRITE_ZEROES = 4, 6
NBD_CMD_FLAG_FUA = 1
NBD_FLAG_CAN_MULTI_CONN = 1 << 8


class NbdError(Exception):
    pass



def stop_daemons(daemons):
    """Stop every iocd still running (SIGTERM by PID); the problems as text:
    one that died during the test, or did not exit 0 within 10 s of SIGTERM."""
    problems = []
    for d in daemons:
        if d.proc is None or d.stopped:
            continue
        if not d.alive():
            problems.append(f"iocd (pid {d.pid}) died during the test: exit status "
                            f"{d.proc.returncode}\n{d.log_tail()}")
            d.stop()
            continue
        status, killed = d.stop()
        if killed:
            problems.append(f"iocd (pid {d.pid}) did not exit within 10 s of SIGTERM; "
                            f"killed\n{d.log_tail()}")
        elif status != 0:
            problems.append(f"iocd (pid {d.pid}) exited with status {status} on SIGTERM "
                            f"(expected 0)\n{d.log_tail()}")
    return problems


def start_on_port(d, port):
    """Start iocd d with its NBD listener on `port` (a restarted node keeps its URI)."""
    global free_port
    saved = free_port
    free_port = lambda: port  # noqa: E731 - Iocd.start() picks its port through this
    try:
        return d.start()
    finally:
        free_port = saved

def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise NbdError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


class NbdClient:
    """Just enough NBD to drive iocd byte by byte from a test."""

    def __init__(self, port, export, host="127.0.0.1", timeout=10.0):
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.handle = 0
        magic, opts, hflags = struct.unpack(">QQH", recv_exact(self.s, 18))
        if magic != NBD_MAGIC or opts != NBD_OPTS_MAGIC:
            raise NbdError(f"bad greeting {magic:#x} {opts:#x}")
        self.s.sendall(struct.pack(">I", hflags & 3))
        self.no_zeroes = bool(hflags & 2)
        name = export.encode()
        self._opt(NBD_OPT_GO, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
        self.size = self.flags = None
        while True:
            magic, opt, rtype, length = struct.unpack(">QIII", recv_exact(self.s, 20))
            data = recv_exact(self.s, length)
            if magic != NBD_REP_MAGIC:
                raise NbdError(f"bad option reply magic {magic:#x}")
            if rtype == NBD_REP_ACK:
                break
            if rtype & (1 << 31):
                raise NbdError(f"NBD_OPT_GO refused: {rtype:#x} {data!r}")
            if rtype == NBD_REP_INFO and struct.unpack(">H", data[:2])[0] == 0:
                self.size, self.flags = struct.unpack(">QH", data[2:12])
        if self.size is None:
            raise NbdError("NBD_OPT_GO: no NBD_INFO_EXPORT")

    def _opt(self, opt, data):
        self.s.sendall(struct.pack(">QII", NBD_OPTS_MAGIC, opt, len(data)) + data)

    def send(self, cmd, offset=0, length=0, flags=0, data=b""):
        self.handle += 1
        self.s.sendall(struct.pack(">IHHQQI", NBD_REQUEST_MAGIC, flags, cmd,
                                   self.handle, offset, length) + data)
        return self.handle

    def reply(self, read_len=0):
        magic, err, handle = struct.unpack(">IIQ", recv_exact(self.s, 16))
        if magic != NBD_SIMPLE_REPLY_MAGIC:
            raise NbdError(f"bad reply magic {magic:#x}")
        data = recv_exact(self.s, read_len) if err == 0 and read_len else b""
        return err, handle, data

    def cmd(self, cmd, offset=0, length=0, flags=0, data=b""):
        h = self.send(cmd, offset, length, flags, data)
        err, handle, payload = self.reply(length if cmd == NBD_CMD_READ else 0)
        if handle != h:
            raise NbdError(f"reply handle {handle} != request {h}")
        return err, payload

    def write(self, offset, data, flags=0):
        return self.cmd(NBD_CMD_WRITE, offset, len(data), flags, data)[0]

    def read(self, offset, length):
        err, data = self.cmd(NBD_CMD_READ, offset, length)
        if err:
            raise NbdError(f"read failed: NBD error {err}")
        return data

    def flush(self):
        return self.cmd(NBD_CMD_FLUSH)[0]

    def close(self):
        try:
            self.send(NBD_CMD_DISC)
        except OSError:
            pass
        self.s.close()


def qemu_io(uri, *cmds, read_only=False, check=True, timeout=60):
    """Run qemu-io commands on one connection; check=True also fails on any
    'failed' line (aio commands report errors without changing the exit)."""
    import pytest

    args = [need("qemu-io"), "-f", "raw"]
    if read_only:
        args.append("-r")
    args.append(uri)
    for c in cmds:
        args += ["-c", c]
    p = run(args, check=False, timeout=timeout)
    out = p.stdout + p.stderr
    if check and (p.returncode != 0 or "failed" in out.lower()):
        pytest.fail(f"qemu-io exit {p.returncode}: {cmds}\n{out[-4000:]}", pytrace=False)
    return p
