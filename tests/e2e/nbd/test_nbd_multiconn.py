"""Multi-conn: a FLUSH on one connection covers writes completed on another."""
import os

import pytest

from ioc_e2e import MiB, NBD_CMD_FLAG_FUA, NBD_FLAG_CAN_MULTI_CONN, NbdClient


@pytest.mark.parametrize("direct", [False, True])
def test_nbd_multiconn_flush_other_connection(iocd, tmp_path, direct):
    path = tmp_path / "v.raw"
    iocd.rpc("bdev_file_create", name="v", path=str(path), size="16MiB", direct=direct)
    iocd.rpc("nbd_export_add", name="v", bdev="v")
    a = NbdClient(iocd.port, "v")
    b = NbdClient(iocd.port, "v")
    try:
        assert a.flags & NBD_FLAG_CAN_MULTI_CONN, "export does not advertise multi-conn"
        data = os.urandom(1 * MiB)
        assert a.write(3 * MiB, data) == 0                  # no FUA, no flush on A
        assert b.flush() == 0, "FLUSH on connection B failed"
        assert b.read(3 * MiB, 1 * MiB) == data, "B does not see A's completed write"
        with open(path, "rb") as f:
            f.seek(3 * MiB)
            assert f.read(1 * MiB) == data, "flushed write not in the backing file"
        # FUA write on B, read on A
        data2 = os.urandom(64 * 1024)
        assert b.write(5 * MiB, data2, flags=NBD_CMD_FLAG_FUA) == 0
        assert a.read(5 * MiB, len(data2)) == data2
    finally:
        a.close()
        b.close()


def test_nbd_multiconn_interleaved(iocd):
    """Four connections writing disjoint ranges concurrently, each then read by another."""
    iocd.malloc_export("v", size="16MiB")
    conns = [NbdClient(iocd.port, "v") for _ in range(4)]
    try:
        blobs = [os.urandom(256 * 1024) for _ in conns]
        handles = []
        for i, c in enumerate(conns):       # queue all writes before reading any reply
            for k in range(4):
                handles.append((c, c.send(1, i * 4 * MiB + k * 256 * 1024, len(blobs[i]),
                                          data=blobs[i])))
        for c, h in handles:
            err, handle, _ = c.reply()
            assert err == 0
        for c in conns:
            assert c.flush() == 0
        for i in range(4):
            reader = conns[(i + 1) % 4]
            for k in range(4):
                assert reader.read(i * 4 * MiB + k * 256 * 1024, len(blobs[i])) == blobs[i]
    finally:
        for c in conns:
            c.close()
