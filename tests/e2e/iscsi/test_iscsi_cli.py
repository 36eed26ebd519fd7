"""iocctl's iscsi commands: create with LUNs, allow-list and CHAP; list with
sessions; options; delete; and the RPC errors people will meet."""
import pytest

from iscsi_util import need_qemu_iscsi
from ioc_e2e import RpcError, need, run


def test_iscsi_cli_create_list_delete(iscsi_iocd, tmp_path):
    for n in ("c0", "c1"):
        iscsi_iocd.rpc("bdev_malloc_create", name=n, size="8MiB")
    iqn = "iqn.2024-01.io.ioc.test:cli"
    iscsi_iocd.iocctl("iscsi", "target", "create", iqn, "c0,c1", "--allow",
                      "iqn.2024-01.io.ioc.test:a,iqn.2024-01.io.ioc.test:b",
                      "--chap-user", "u", "--chap-secret", "0123456789ab")
    p = iscsi_iocd.iocctl("iscsi", "target", "list")
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["IQN", "LUN", "BDEV", "CHAP", "SESSIONS"]
    assert lines[1].split() == [iqn, "0", "c0", "yes", "0"]
    assert lines[2].split() == ["1", "c1"]
    t = iscsi_iocd.rpc("iscsi_target_list")[0]
    assert t["allowed_initiators"] == ["iqn.2024-01.io.ioc.test:a", "iqn.2024-01.io.ioc.test:b"]
    p = iscsi_iocd.iocctl("iscsi", "options", "set", "--max-burst-length", "1MiB", "-o", "json")
    assert '"max_burst_length": 1048576' in p.stdout
    iscsi_iocd.iocctl("iscsi", "target", "delete", iqn)
    assert iscsi_iocd.rpc("iscsi_target_list") == []


def test_iscsi_cli_session_shows_in_list(iscsi_iocd, tmp_path, procs):
    need_qemu_iscsi()
    iqn = iscsi_iocd.file_target("s", tmp_path / "s.img", size="16MiB")
    # qemu-io keeps its session open while it waits for the next command on stdin
    p = procs.start([need("qemu-io"), "-f", "raw", iscsi_iocd.url(iqn)],
                    stdin=__import__("subprocess").PIPE, text=True)
    for _ in range(100):
        t = iscsi_iocd.rpc("iscsi_target_list")[0]
        if t["sessions"] == 1 and t["connections"]:
            break
        __import__("time").sleep(0.05)
    assert t["sessions"] == 1
    c = t["connections"][0]
    assert c["target"] == iqn and c["state"] == "full" and c["tsih"] > 0
    p.stdin.write("quit\n")
    p.stdin.close()
    p.wait(10)


@pytest.mark.parametrize("params, code, words", [
    ({"iqn": "not-an-iqn", "luns": [{"lun": 0, "bdev": "e0"}]}, -22, "iqn"),
    ({"iqn": "iqn.2024-01.io.ioc.test:e", "luns": []}, -22, "luns"),
    ({"iqn": "iqn.2024-01.io.ioc.test:e", "luns": [{"lun": 0, "bdev": "nosuch"}]}, -19,
     "nosuch"),
    ({"iqn": "iqn.2024-01.io.ioc.test:e", "luns": [{"lun": 0, "bdev": "e0"}],
      "chap": {"user": "u"}}, -22, "chap.secret"),
    ({"iqn": "iqn.2024-01.io.ioc.test:e", "luns": [{"lun": 0, "bdev": "e0"}], "lunz": 1},
     -22, "lunz"),
])
def test_iscsi_rpc_errors(iscsi_iocd, params, code, words):
    iscsi_iocd.rpc("bdev_malloc_create", name="e0", size="8MiB")
    with pytest.raises(RpcError) as e:
        iscsi_iocd.rpc("iscsi_target_create", **params)
    assert e.value.code == code and words in e.value.message, e.value.message


def test_iscsi_rpc_duplicate_and_missing(iscsi_iocd):
    iscsi_iocd.rpc("bdev_malloc_create", name="e0", size="8MiB")
    iscsi_iocd.rpc("iscsi_target_create", iqn="iqn.2024-01.io.ioc.test:d",
                   luns=[{"lun": 0, "bdev": "e0"}])
    with pytest.raises(RpcError) as e:
        iscsi_iocd.rpc("iscsi_target_create", iqn="iqn.2024-01.io.ioc.test:d",
                       luns=[{"lun": 0, "bdev": "e0"}])
    assert e.value.code == -17
    with pytest.raises(RpcError) as e:
        iscsi_iocd.rpc("iscsi_target_delete", iqn="iqn.2024-01.io.ioc.test:nope")
    assert e.value.code == -2
