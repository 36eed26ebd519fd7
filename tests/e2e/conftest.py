"""Shared fixtures for the end-to-end tests.

Run with Debian's interpreter: /usr/bin/python3 -m pytest tests/e2e
The build directory comes from $IOC_BUILD (default: <repo>/build).

`iocd` starts the daemon on a temporary unix RPC socket, a free loopback
port and a unix NBD socket, waits until it answers rpc_get_methods, and
always stops it by PID in teardown. Teardown fails the test if the daemon
died during the test, or if it does not exit 0 within 10 s of SIGTERM; the
daemon's log is attached to every failure report.
"""
import subprocess

import pytest

from ioc_e2e import Iocd, stop_daemons, stop_process


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: takes several seconds; still part of the default run")


@pytest.fixture
def make_iocd(tmp_path, request):
    """Factory: make_iocd(*extra_args) starts another iocd."""
    started = []

    def make(*args):
        d = Iocd(tmp_path / f"iocd{len(started)}", args)
        started.append(d)
        request.node.ioc_daemons = started
        return d.start()

    yield make

    problems = stop_daemons(started)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def iocd(make_iocd):
    """One iocd with default options (1 core, adaptive polling)."""
    return make_iocd()


@pytest.fixture
def procs():
    """Background clients: procs.start(cmd) -> Popen; all stopped by PID at the end."""

    class Procs(list):
        def start(self, cmd, **kw):
            kw.setdefault("stdin", subprocess.DEVNULL)
            kw.setdefault("stdout", subprocess.PIPE)
            kw.setdefault("stderr", subprocess.PIPE)
            p = subprocess.Popen([str(c) for c in cmd], **kw)
            self.append(p)
            return p

    ps = Procs()
    yield ps
    for p in ps:
        stop_process(p, timeout=5)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when == "call":
        for d in getattr(item, "ioc_daemons", []):
            rep.sections.append((f"iocd log (pid {d.pid})", d.log_tail(200)))
