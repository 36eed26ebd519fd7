"""Helpers for the nexus end-to-end tests: replicas (pool volumes exported by
their own iocd on a fixed port, so a replica killed with -9 comes back at the
same URI), polling nexus_list, the verifier and content checksums."""
import hashlib
import os
import signal
import subprocess
import time

import pytest

from ioc_e2e import BUILD, NbdClient, free_port, run

VOL_SIZE = 64 << 20


def need_verify():
    path = BUILD / "tools" / "ioc-verify"
    if not path.exists():
        pytest.fail(f"{path} missing: run `make build` (needs the Debian package "
                    f"'libnbd-dev', scripts/deps.sh build installs it)", pytrace=False)
    return path


class Replica:
    """A pool volume `p/v` exported as `v` by its own iocd on a fixed port."""

    def __init__(self, make_iocd, workdir, name, size=VOL_SIZE):
        self.make_iocd = make_iocd
        self.name = name
        self.size = size
        self.port = free_port()
        self.pool_path = workdir / f"{name}.pool"
        self.d = None

    @property
    def uri(self):
        return f"nbd://127.0.0.1:{self.port}/v"

    def start(self, create=False):
        args = ["--nbd-listen", f"127.0.0.1:{self.port}"]
        if not create:
            args += ["--pool", str(self.pool_path)]
        self.d = self.make_iocd(*args)
        if create:
            self.d.rpc("pool_create", name="p", path=str(self.pool_path),
                       size=self.size * 2 + (16 << 20))
            self.d.rpc("volume_create", pool="p", name="v", size=self.size)
        self.d.rpc("nbd_export_add", name="v", bdev="p/v")
        return self

    def kill(self):
        """kill -9 by PID; the fixture then has nothing left to stop."""
        os.kill(self.d.pid, signal.SIGKILL)
        self.d.proc.wait(10)
        self.d.stop()

    def checksum(self):
        return export_checksum(self.port, "v", self.size)


def export_checksum(port, export, size):
    h = hashlib.sha256()
    c = NbdClient(port, export)
    try:
        for off in range(0, size, 1 << 20):
            h.update(c.read(off, 1 << 20))
    finally:
        c.close()
    return h.hexdigest()


def nexus(nx, name="vol"):
    (n,) = nx.rpc("nexus_list", name=name)
    return n


def child(nx, uri, name="vol"):
    for c in nexus(nx, name)["children"]:
        if c["uri"] == uri:
            return c
    raise AssertionError(f"no child {uri} in {nexus(nx, name)}")


def wait_for(what, fn, timeout=60.0, interval=0.1):
    """Poll fn() until it returns a true value; fail naming `what` after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last})", pytrace=False)


def verify_check(uri, state, **kw):
    args = [need_verify(), "check", uri, "--state", state]
    for k, v in kw.items():
        args += [f"--{k.replace('_', '-')}", v]
    p = run(args, check=False, timeout=120)
    counts = dict(kv.split("=") for kv in p.stdout.split()[1:]) if p.stdout.startswith(
        "check:") else {}
    return p, {k: int(v) for k, v in counts.items()}


def verify_counts(out, prefix="write:"):
    for line in out.splitlines():
        if line.startswith(prefix):
            return {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    return {}


def export_checksum_unix(sock, export, size):
    """sha256 of an export read with nbdcopy over a unix socket (works across namespaces)."""
    h = hashlib.sha256()
    proc = subprocess.Popen(["nbdcopy", f"nbd+unix:///{export}?socket={sock}", "-"],
                            stdout=subprocess.PIPE)
    n = 0
    while True:
        chunk = proc.stdout.read(1 << 20)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
    assert proc.wait(120) == 0 and n == size, (n, size)
    return h.hexdigest()
