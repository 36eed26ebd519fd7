"""iocctl tables for pools and volumes; first writes from several connections on 2 cores."""
import json

from ioc_e2e import need, run


def test_pool_cli_tables_and_json(iocd, tmp_path):
    iocd.rpc("pool_create", name="p", path=str(tmp_path / "p.img"), size="64MiB",
             cluster_size=64 * 1024)
    iocd.rpc("volume_create", pool="p", name="v", size="16MiB")
    iocd.rpc("volume_snapshot", volume="p/v", name="s")
    out = iocd.iocctl("pool", "list").stdout.splitlines()
    assert out[0].split() == ["NAME", "SIZE", "USED", "FREE", "CLUSTER", "VOLUMES", "BDEV"], out
    assert out[1].split()[0] == "p" and out[1].split()[5] == "2", out
    pools = json.loads(iocd.iocctl("-o", "json", "pool", "list").stdout)
    assert pools[0]["name"] == "p" and pools[0]["volumes"] == 2
    out = iocd.iocctl("volume", "list", "p").stdout.splitlines()
    assert out[0].split() == ["NAME", "TYPE", "SIZE", "ALLOCATED", "PARENT", "CHILDREN",
                              "ACCESS"], out
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert rows["p/v"][1:2] == ["volume"] and rows["p/v"][-3:] == ["s", "0", "rw"], out
    assert rows["p/s"][1] == "snapshot" and rows["p/s"][-1] == "ro", out
    vols = json.loads(iocd.iocctl("-o", "json", "volume", "list", "p").stdout)
    assert {v["name"] for v in vols} == {"v", "s"}


def test_pool_two_cores_concurrent_first_writes(make_iocd, tmp_path):
    """4 connections interleave 4 KiB first writes in every cluster (the slow
    path, forwarded to the pool's home reactor from both reactors), then
    random rewrites; fio verifies every block with crc32c."""
    d = make_iocd("--cores", "2")
    img = tmp_path / "p.img"
    d.rpc("pool_create", name="p", path=str(img), size="128MiB", cluster_size=64 * 1024)
    d.rpc("volume_create", pool="p", name="v", size="32MiB")
    d.rpc("nbd_export_add", name="v", bdev="p/v")
    uri = d.uri("v")
    fio = need("fio")
    common = [fio, "--ioengine=nbd", f"--uri={uri}", "--thread", "--numjobs=4",
              "--group_reporting", "--verify=crc32c", "--do_verify=1", "--iodepth=16",
              "--bs=4k", "--offset_increment=4k", "--verify_fatal=1",
              "--verify_state_save=0"]
    p = run(common + ["--name=first", "--rw=write:12k", "--size=32752k"], check=False,
            timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    p = run(common + ["--name=again", "--rw=randwrite", "--size=8M", "--offset_increment=8M",
                      "--bs=4k"], check=False, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    vols = d.rpc("volume_list", pool="p")
    assert vols[0]["allocated"] == 32 * 1024 * 1024, vols
    d.rpc("nbd_export_remove", name="v")
    status, killed = d.stop()
    assert status == 0 and not killed
    p = run([str(d.iocctl_bin), "pool", "check", str(img)], check=False)
    assert p.returncode == 0 and "clean" in p.stdout, p.stdout + p.stderr
