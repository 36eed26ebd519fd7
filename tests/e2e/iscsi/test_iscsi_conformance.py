"""libiscsi's conformance suite (all four families: ALL, SCSI, iSCSI, LINUX;
615 tests) against a file bdev and against a thin pool volume, through
scripts/iscsi-conformance.sh, which starts its own iocd. About 40 s each."""
import os
import re
import time

import pytest

from ioc_e2e import BUILD, ROOT, need, run


def conformance(*args):
    need("iscsi-test-cu")
    t0 = time.monotonic()
    p = run(["bash", ROOT / "scripts" / "iscsi-conformance.sh", *args, BUILD], check=False,
            timeout=600, env=dict(os.environ))
    elapsed = time.monotonic() - t0
    m = re.search(r"^(\d+) passed, (\d+) failed$", p.stdout, re.M)
    assert m, f"no summary line:\n{p.stdout}\n{p.stderr}"
    passed, failed = int(m.group(1)), int(m.group(2))
    assert failed == 0 and p.returncode == 0, f"{p.stdout}\n{p.stderr}"
    assert passed >= 600, p.stdout
    # the whole run (four iscsi-test-cu invocations) stays well inside 120 s: no stall
    assert elapsed < 120, f"took {elapsed:.0f} s\n{p.stdout}"
    return elapsed


@pytest.mark.slow
def test_iscsi_conformance_file():
    conformance()


@pytest.mark.slow
def test_iscsi_conformance_pool_volume():
    conformance("--pool")
