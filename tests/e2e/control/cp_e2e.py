"""Helpers for the control-plane tests: a local etcd (by PID), iocctl, waiting.

`etcd` starts a single-member etcd on free loopback ports with its data in
the test's tmp_path and stops it by PID. `cluster` starts iocd nodes
(`--node NAME --etcd URL`) through the shared make_iocd fixture, so they are
stopped and checked the same way as every other daemon.
"""
import base64
import hashlib
import json
import shutil
import subprocess
import time
import urllib.request

import pytest

from ioc_e2e import BUILD, free_port, run, stop_process


class Etcd:
    def __init__(self, workdir):
        self.workdir = workdir
        self.proc = None
        self.url = None

    def start(self, same_ports=False):
        if shutil.which("etcd") is None:
            pytest.fail("etcd not found: install the Debian package 'etcd-server' "
                        "(scripts/deps.sh test does it)", pytrace=False)
        if same_ports:  # a restart: same URL and data
            cport, pport = self.ports
        else:
            cport, pport = free_port(), free_port()
        self.ports = (cport, pport)
        self.url = f"http://127.0.0.1:{cport}"
        peer = f"http://127.0.0.1:{pport}"
        self.log = open(self.workdir / "etcd.log", "ab")
        self.proc = subprocess.Popen(
            ["etcd", "--name", "t", "--data-dir", str(self.workdir / "etcd-data"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"t={peer}"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                self.range("/")
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        pytest.fail("etcd did not start:\n" +
                    (self.workdir / "etcd.log").read_text(errors="replace")[-2000:],
                    pytrace=False)

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc)
            self.log.close()
            self.proc = None

    def _post(self, path, body):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    @staticmethod
    def _b64(s):
        return base64.b64encode(s.encode()).decode()

    def range(self, prefix):
        """Every key under prefix: {key: value(str)}."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        resp = self._post("/v3/kv/range", {"key": self._b64(prefix),
                                           "range_end": self._b64(end)})
        return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode()
                for kv in resp.get("kvs", [])}

    def put(self, key, value):
        self._post("/v3/kv/put", {"key": self._b64(key), "value": self._b64(value)})



def iocctl(etcd, *args, check=True, input=None):
    return run([BUILD / "iocctl", "--etcd", etcd.url, *args], check=check, input=input)


def wait_for(fn, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})",
                pytrace=False)


def volume(etcd, name):
    r = iocctl(etcd, "get", "volume", name, "-o", "json", check=False)
    return json.loads(r.stdout) if r.returncode == 0 else None


def status(etcd, name="db"):
    v = volume(etcd, name)
    return (v or {}).get("status", {})


def phase_is(etcd, want, name="db"):
    st = status(etcd, name)
    return st if st.get("phase") == want else None


def export_checksum(uri, size):
    """sha256 of the first size bytes of an nbd:// export (nbdcopy to stdout)."""
    p = subprocess.run(["nbdcopy", uri, "-"], capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    return hashlib.sha256(p.stdout[:size]).hexdigest()


def verifier():
    path = BUILD / "tools" / "ioc-verify"
    if not path.exists():
        pytest.fail(f"{path} missing: run `make build` (libnbd-dev)", pytrace=False)
    return path


def verify_check(uri, state):
    p = run([verifier(), "check", uri, "--state", state], check=False, timeout=120)
    counts = dict(kv.split("=") for kv in p.stdout.split()[1:]) if p.stdout.startswith(
        "check:") else {}
    return p, {k: int(v) for k, v in counts.items()}


def write_errors(out):
    for line in out.splitlines():
        if line.startswith("write:"):
            return float(dict(kv.split("=") for kv in line.split()[1:]).get("errors", -1))
    return -1
