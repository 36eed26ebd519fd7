"""Fixtures for the NBD initiator tests: NBD servers (nbdkit, qemu-storage-daemon)
that a test may kill -9 and restart on the same port. Every process is started
by PID and stopped by PID in teardown."""
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from ioc_e2e import free_port, stop_process

from nbdc_util import need_server, wait_port  # noqa: F401 (shared with the tests)


class NbdServer:
    """One NBD server on a fixed port; start() again after kill() reuses the port."""

    def __init__(self, kind, path, workdir, export="x"):
        self.kind = kind
        self.path = str(path)
        self.port = free_port()
        self.export = export
        self.log = open(os.path.join(workdir, f"{kind}-{self.port}.log"), "ab")
        self.proc = None

    def cmd(self):
        if self.kind == "nbdkit":
            return [need_server("nbdkit"), "-f", "-p", str(self.port), "-i", "127.0.0.1",
                    "--exportname", self.export, "file", self.path]
        return [need_server("qemu-storage-daemon"),
                "--blockdev", f"driver=file,node-name=f,filename={self.path}",
                "--nbd-server", f"addr.type=inet,addr.host=127.0.0.1,addr.port={self.port}",
                "--export", f"type=nbd,id=e,node-name=f,name={self.export},writable=on"]

    def start(self):
        self.proc = subprocess.Popen(self.cmd(), stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        wait_port(self.port, self.proc)
        return self

    def kill(self):
        """kill -9 by PID, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc, timeout=5)
        self.log.close()

    @property
    def uri(self):
        return f"nbd://127.0.0.1:{self.port}/{self.export}"


@pytest.fixture
def nbd_server(tmp_path):
    """Factory: nbd_server(kind, image_path) -> a started NbdServer; all stopped at the end."""
    started = []

    def make(kind, path, export="x"):
        s = NbdServer(kind, path, tmp_path, export)
        started.append(s)
        return s.start()

    yield make
    for s in started:
        s.stop()
