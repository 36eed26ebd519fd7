"""Many sessions at once, spread over two reactors: each writes and reads back
its own pattern through qemu-io while the others run; the target list shows
them; a target deleted under live sessions closes them and iocd lives on."""
import subprocess
import time

from ioc_e2e import MiB, free_port, need, run
from iscsi_util import IscsiIocd, need_qemu_iscsi

SESSIONS = 16


def test_iscsi_many_sessions_two_reactors(make_iocd, tmp_path, procs):
    need_qemu_iscsi()
    qemu_io = need("qemu-io")
    port = free_port()
    d = IscsiIocd(make_iocd("--cores", "2", "--iscsi-listen", f"127.0.0.1:{port}"), port)
    iqn = d.file_target("many", tmp_path / "many.img", size=f"{SESSIONS * 4}MiB")
    ps = []
    for i in range(SESSIONS):
        off = i * 4 * MiB
        pat = 0x10 + i
        ps.append(procs.start([qemu_io, "-f", "raw", "-c", f"write -P {pat} {off} 4M",
                               "-c", f"read -P {pat} {off} 4M", d.url(iqn)], text=True))
    for i, p in enumerate(ps):
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, f"session {i}: {out}{err}"
        assert "Pattern verification failed" not in out, f"session {i}: {out}"
    data = (tmp_path / "many.img").read_bytes()
    for i in range(SESSIONS):
        assert data[i * 4 * MiB:(i + 1) * 4 * MiB] == bytes([0x10 + i]) * (4 * MiB), i
    run([need("iscsi-inq"), d.url(iqn)])


def test_iscsi_target_delete_with_live_session(iscsi_iocd, tmp_path, procs):
    need_qemu_iscsi()
    iqn = iscsi_iocd.file_target("live", tmp_path / "live.img", size="16MiB")
    p = procs.start([need("qemu-io"), "-f", "raw", iscsi_iocd.url(iqn)],
                    stdin=subprocess.PIPE, text=True)
    for _ in range(200):
        if iscsi_iocd.rpc("iscsi_target_list")[0]["sessions"] == 1:
            break
        time.sleep(0.05)
    assert iscsi_iocd.rpc("iscsi_target_list")[0]["sessions"] == 1
    iscsi_iocd.rpc("iscsi_target_delete", iqn=iqn)
    # the session is gone, the bdev is free again
    for _ in range(200):
        try:
            iscsi_iocd.rpc("bdev_delete", name="live")
            break
        except Exception:
            time.sleep(0.05)
    assert all(b["name"] != "live" for b in iscsi_iocd.rpc("bdev_list"))
    p.stdin.close()
    p.wait(10)
    assert iscsi_iocd.alive()
