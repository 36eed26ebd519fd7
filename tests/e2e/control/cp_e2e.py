"""Helpers for the control-plane tests: a local etcd (by PID), iocctl, waiting,
and the two topologies the cluster tests run on.

`Etcd` starts a single-member etcd on free ports with its data in the test's
tmp_path and stops it by PID.

Topologies (the `topo` fixture in conftest.py runs a test on each):
- `Loopback`: etcd and every iocd node on 127.0.0.1, nodes started through
  the shared make_iocd fixture (stopped and checked like every daemon).
- `Netns`: each iocd node in its own network namespace. A "hub" namespace
  holds one bridge; every node namespace has a veth to it (eth0, 10.77.S.1x)
  and so does the root namespace (10.77.S.1, where etcd listens and the
  test's clients run). S is unique per topology (checked under a lock
  against the root namespace's addresses). Nodes advertise their namespace
  address (their NBD listener), so the nexus on one node reaches replicas on
  the others across the bridge. Only the namespaces and the one root-side
  veth this creates are touched; all are deleted at the end, on failure too.
"""
import base64
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.request

import pytest

import ioc_e2e
from ioc_e2e import BUILD, Iocd, free_port, run, start_on_port, stop_daemons, stop_process


class Etcd:
    def __init__(self, workdir, host="127.0.0.1"):
        self.workdir = workdir
        self.host = host
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
        self.url = f"http://{self.host}:{cport}"
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

    def delete(self, key):
        self._post("/v3/kv/deleterange", {"key": self._b64(key)})



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


# ---- topologies ---------------------------------------------------------

class Loopback:
    """etcd and the iocd nodes on 127.0.0.1."""
    name = "loopback"

    def __init__(self, tmp_path, request):
        self.tmp_path = tmp_path
        self.request = request
        self.make_iocd = request.getfixturevalue("make_iocd")
        self.etcd = Etcd(tmp_path).start()
        self.restarted = []

    def node(self, name, *extra):
        """Start iocd --node name (a controller too with extra --controller ...)."""
        return self.make_iocd("--node", name, "--etcd", self.etcd.url, *extra)

    def restart(self, old):
        """Start a killed node again in its workdir, on its old NBD port."""
        d = start_on_port(Iocd(old.workdir, old.extra_args), old.port)
        self.restarted.append(d)
        return d

    def close(self):
        """Every node first (make_iocd's too: they talk to etcd while stopping), then etcd."""
        try:
            return stop_daemons(list(getattr(self.request.node, "ioc_daemons", [])) +
                                  self.restarted)
        finally:
            self.etcd.stop()


def ip(*args, check=True):
    p = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {p.stderr.strip()}")
    return p


class NsIocd(Iocd):
    """An iocd in a network namespace (`ip netns exec`, same PID), its NBD
    listener on the namespace's address: Iocd's --nbd-listen 127.0.0.1:PORT
    becomes ADDR:PORT (the port still picked by free_port, so a restart on
    the old port works the same way)."""

    def __init__(self, workdir, args, ns, addr):
        super().__init__(workdir, args)
        self.ns, self.addr = ns, addr
        wrapper = self.workdir / "iocd-netns.sh"
        wrapper.write_text(
            "#!/bin/sh\n"
            "for a do\n"
            "  shift\n"
            f"  case \"$a\" in 127.0.0.1:*) a=\"{addr}:${{a#127.0.0.1:}}\";; esac\n"
            "  set -- \"$@\" \"$a\"\n"
            "done\n"
            f"exec ip netns exec {ns} {BUILD / 'iocd'} \"$@\"\n")
        wrapper.chmod(0o755)
        self.binary = wrapper

    def uri(self, export, unix=False):
        if unix:
            return super().uri(export, unix)
        return f"nbd://{self.addr}:{self.port}/{export}"


NETNS_LOCK = "/tmp/ioc-cp-netns.lock"
NETNS_PREFIX = "iocp"  # namespaces iocp<pid>h (hub) and iocp<pid><node>


class Netns:
    """Each iocd node in its own network namespace, bridged; etcd on the root side."""
    name = "netns"

    def __init__(self, tmp_path, request, nodes="abcd"):
        if os.geteuid() != 0 or shutil.which("ip") is None or subprocess.run(
                ["ip", "netns", "list"], capture_output=True).returncode != 0:
            pytest.fail("needs root and ip netns (Debian package iproute2); run the suite "
                        "as root", pytrace=False)
        self.tmp_path = tmp_path
        self.request = request
        self.daemons = []
        self.namespaces = []
        self.root_link = None
        self.namespaces_made, self.root_link_made = [], None  # kept after teardown: for checks
        self.etcd = None
        self.tag = f"{NETNS_PREFIX}{os.getpid()}"
        try:
            self._build(nodes)
            self.etcd = Etcd(tmp_path, host=self.root_addr).start()
        except BaseException:
            self._teardown_net()
            raise

    def _sweep(self):
        """Namespaces a killed earlier run of this helper left (its PID is gone)."""
        for line in ip("netns", "list", check=False).stdout.splitlines():
            ns = line.split()[0] if line.split() else ""
            if not ns.startswith(NETNS_PREFIX):
                continue
            digits = "".join(ch for ch in ns[len(NETNS_PREFIX):] if ch.isdigit())
            if digits and not ioc_e2e.pid_alive(int(digits)):
                ip("netns", "del", ns, check=False)

    def _add_ns(self, ns):
        self.namespaces.append(ns)
        self.namespaces_made.append(ns)
        ip("netns", "add", ns)

    def _build(self, nodes):
        with open(NETNS_LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._sweep()
            used = ip("-4", "-o", "addr", "show").stdout + ip("-4", "route", "show",
                                                              "table", "all").stdout
            for i in range(254):
                s = (os.getpid() + i) % 254 + 1
                if f"10.77.{s}." not in used:
                    break
            else:
                pytest.fail("no free 10.77.x.0/24 subnet in the root namespace", pytrace=False)
            self.net = f"10.77.{s}"
            self.root_addr = f"{self.net}.1"
            hub = f"{self.tag}h"
            self._add_ns(hub)
            ip("-n", hub, "link", "add", "br0", "type", "bridge")
            ip("-n", hub, "link", "set", "br0", "up")
            ip("-n", hub, "link", "set", "lo", "up")
            # the root namespace's port: its end in the root namespace, the other on the bridge
            self.root_link = self.root_link_made = f"ivr{os.getpid()}"[:15]
            ip("link", "add", self.root_link, "type", "veth", "peer", "name", "root",
               "netns", hub)
            ip("-n", hub, "link", "set", "root", "master", "br0", "up")
            ip("addr", "add", f"{self.root_addr}/24", "dev", self.root_link)
            ip("link", "set", self.root_link, "up")
        self.addrs = {}
        for i, n in enumerate(nodes):
            ns = f"{self.tag}{n}"
            self._add_ns(ns)
            ip("-n", hub, "link", "add", f"n-{n}", "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            ip("-n", hub, "link", "set", f"n-{n}", "master", "br0", "up")
            addr = f"{self.net}.{11 + i}"
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            self.addrs[n] = (ns, addr)
        self.hub = hub

    def node(self, name, *extra):
        ns, addr = self.addrs[name]
        d = NsIocd(self.tmp_path / f"iocd-{name}", ["--node", name, "--etcd", self.etcd.url,
                                                    *extra], ns, addr)
        self.daemons.append(d)
        self.request.node.ioc_daemons = self.daemons
        return d.start()

    def restart(self, old):
        d = start_on_port(NsIocd(old.workdir, old.extra_args, old.ns, old.addr), old.port)
        self.daemons.append(d)
        return d

    def _teardown_net(self):
        if self.root_link is not None:
            ip("link", "del", self.root_link, check=False)  # its peer on the bridge goes too
        for ns in reversed(self.namespaces):
            ip("netns", "del", ns, check=False)  # each namespace's veths with it
        self.namespaces = []
        self.root_link = None

    def close(self):
        try:
            problems = stop_daemons(self.daemons)
            if self.etcd is not None:
                self.etcd.stop()
        finally:
            self._teardown_net()
        return problems
