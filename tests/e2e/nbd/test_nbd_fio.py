"""fio's nbd engine: verified random writes from two jobs (two connections)."""
import json

import pytest

from ioc_e2e import MiB, need, run


def fio_json(p):
    # fio may print warnings before the JSON document
    text = p.stdout
    return json.loads(text[text.index("{"):])


@pytest.mark.parametrize("kind", ["malloc", "file"])
def test_nbd_fio_verify_two_connections(iocd, tmp_path, kind):
    fio = need("fio")
    if kind == "malloc":
        uri = iocd.malloc_export("v", size="64MiB")
    else:
        uri = iocd.file_export("v", tmp_path / "v.raw", size="64MiB")
    # two jobs, each its own NBD connection and its own 32 MiB half
    p = run([fio, "--name=verify", "--ioengine=nbd", f"--uri={uri}",
             "--rw=randwrite", "--bs=4k", "--bssplit=4k/60:16k/30:64k/10",
             "--size=32M", "--offset_increment=32M", "--numjobs=2",
             "--iodepth=16", "--verify=crc32c", "--verify_fatal=1",
             "--do_verify=1", "--output-format=json", "--group_reporting=0"],
            check=False, timeout=180)
    assert p.returncode == 0, f"fio exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    j = fio_json(p)
    assert len(j["jobs"]) == 2
    for job in j["jobs"]:
        assert job["error"] == 0, job
        assert job["write"]["io_bytes"] >= 32 * MiB, job["write"]
        # the verify pass read back everything it wrote
        assert job["read"]["io_bytes"] >= 32 * MiB, job["read"]
        assert job.get("total_err", 0) == 0, job
    assert "verify" not in p.stderr.lower(), p.stderr


def test_nbd_fio_randrw_verify_queue_depth(iocd):
    """Reads and writes interleaved at QD32 on one connection, verified as it goes."""
    fio = need("fio")
    uri = iocd.malloc_export("v", size="32MiB")
    p = run([fio, "--name=rw", "--ioengine=nbd", f"--uri={uri}", "--rw=randwrite",
             "--bs=8k", "--size=32M", "--iodepth=32", "--verify=crc32c",
             "--verify_backlog=64", "--verify_fatal=1", "--output-format=json"],
            check=False, timeout=120)
    assert p.returncode == 0, f"fio exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    (job,) = fio_json(p)["jobs"]
    assert job["error"] == 0 and job["write"]["io_bytes"] >= 32 * MiB
