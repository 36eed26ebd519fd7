"""Reply coalescing (src/target/target_coalesce.h): a connection holds its
replies back to send several at once while its traffic shows that holding
costs the client nothing, and the reactor sleeps through the arrivals
meanwhile (reactor_stats "holds"). With fio's nbd engine at QD32 it must
engage and the data must stay right; at QD1 it must stay nearly off (each
hold would make the client wait); --coalesce-us 0 turns it off.
"""
import json

from ioc_e2e import MiB, need, run


def fio_run(fio, uri, *args, timeout=120):
    p = run([fio, "--name=c", "--ioengine=nbd", f"--uri={uri}", "--output-format=json",
             *args], check=False, timeout=timeout)
    assert p.returncode == 0, f"fio exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    text = p.stdout
    (job,) = json.loads(text[text.index("{"):])["jobs"]
    assert job["error"] == 0, job
    return job


def holds(d):
    return sum(r["holds"] for r in d.rpc("reactor_stats"))


def malloc_iocd(make_iocd, *args):
    d = make_iocd(*args)
    return d, d.malloc_export("v", size="64MiB")


def reads_and_holds(fio, d, uri, qd):
    """2 s of 4k random reads at queue depth qd: (reads done, holds meanwhile)."""
    h0 = holds(d)
    job = fio_run(fio, uri, "--rw=randread", "--bs=4k", f"--iodepth={qd}", "--time_based",
                  "--runtime=2", "--size=64M", "--norandommap", "--randrepeat=0")
    return job["read"]["total_ios"], holds(d) - h0


def test_nbd_coalesce_engages_at_qd32_and_keeps_the_data(make_iocd):
    fio = need("fio")
    d, uri = malloc_iocd(make_iocd)
    ios, held = reads_and_holds(fio, d, uri, 32)
    assert ios > 0
    assert held > 0, "no reply was held back during 2 s of QD32 reads"
    # verified writes and reads at QD32 while replies are held
    h1 = holds(d)
    job = fio_run(fio, uri, "--rw=randwrite", "--bs=4k", "--iodepth=32", "--size=48M",
                  "--verify=crc32c", "--verify_backlog=64", "--verify_fatal=1")
    assert job["write"]["io_bytes"] >= 48 * MiB
    assert holds(d) > h1, "no reply was held back during the verified writes"


def test_nbd_coalesce_stays_off_at_qd1(make_iocd):
    fio = need("fio")
    d, uri = malloc_iocd(make_iocd)
    ios, held = reads_and_holds(fio, d, uri, 1)
    assert ios > 1000
    # a few 5 ms probes (the first after 0.1 s, then 0.2, 0.4 ...) and nothing else
    assert held * 100 < ios * 2, f"{held} holds for {ios} QD1 reads"


def test_nbd_coalesce_off(make_iocd):
    fio = need("fio")
    d, uri = malloc_iocd(make_iocd, "--coalesce-us", "0")
    ios, _ = reads_and_holds(fio, d, uri, 32)
    assert ios > 0
    assert holds(d) == 0
