"""scripts/demo.sh, behind `make run`: the three-node demo serves its
replicated volume over NBD, and after `stop` and `start` on the same data
folder it serves the same bytes again. (Until session 6 every start took new
ports, so the replicas' URIs changed, the restarted nexus recognised none of
its children as in sync and the volume stayed without an export.)"""
import os
import re
import time

from ioc_e2e import BUILD, ROOT, need, run


def demo(cmd, data):
    env = dict(os.environ, DATA=str(data))
    return run(["bash", str(ROOT / "scripts" / "demo.sh"), cmd, str(BUILD)], env=env,
               timeout=240)


def nbd_uri(out):
    m = re.search(r"NBD URI: (nbd://\S+)", out)
    assert m, out
    return m.group(1)


def read_back(qemu_io, uri, pattern, seconds=30):
    """qemu-io read -P; the export may appear a moment after the volume is Online."""
    deadline = time.monotonic() + seconds
    while True:
        p = run([qemu_io, "-f", "raw", uri, "-c", f"read -P {pattern} 0 1M"], check=False)
        if p.returncode == 0 and "Pattern verification failed" not in p.stdout + p.stderr:
            return
        assert time.monotonic() < deadline, p.stdout + p.stderr
        time.sleep(1)


def test_demo_restart_serves_the_same_bytes(tmp_path):
    qemu_io = need("qemu-io")
    data = tmp_path / "data"
    try:
        uri = nbd_uri(demo("start", data).stdout)
        run([qemu_io, "-f", "raw", uri, "-c", "write -P 0x5a 0 1M", "-c", "flush"])
        demo("stop", data)
        uri = nbd_uri(demo("start", data).stdout)
        read_back(qemu_io, uri, "0x5a")
        log = (data / "demo" / "a" / "iocd.log").read_text(errors="replace")
        assert "none is in sync" not in log, log[-3000:]
    finally:
        demo("stop", data)
