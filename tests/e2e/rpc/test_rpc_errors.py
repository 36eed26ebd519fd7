"""JSON-RPC errors: bad params name the field, unknown methods, in-use bdevs."""
import json
import socket

import pytest

from ioc_e2e import RpcError


def rpc_error(iocd, method, **params):
    with pytest.raises(RpcError) as ei:
        iocd.rpc(method, **params)
    return ei.value


@pytest.mark.parametrize("params, field, code", [
    ({"name": "x", "size": "12XB"}, "size", -32602),
    ({"name": "x", "size": -5}, "size", -32602),
    ({"name": "x"}, "size", -32602),
    ({"size": "1MiB"}, "name", -32602),
    ({"name": 5, "size": "1MiB"}, "name", -32602),
    ({"name": "x", "size": "1MiB", "bogus": 1}, "bogus", -32602),
    # a well-formed value the module refuses: the daemon answers with -errno
    ({"name": "x", "size": "1MiB", "block_size": 1000}, "block_size", None),
    ({"name": "x", "size": 0}, "size", None),
])
def test_rpc_errors_malloc_params(iocd, params, field, code):
    e = rpc_error(iocd, "bdev_malloc_create", **params)
    if code is not None:
        assert e.code == code, e
    assert field in e.message, f"error message does not name '{field}': {e.message}"
    assert "x" not in [b["name"] for b in iocd.rpc("bdev_list")]


def test_rpc_errors_other_params(iocd, tmp_path):
    e = rpc_error(iocd, "bdev_file_create", name="f")
    assert e.code == -32602 and "path" in e.message, e
    e = rpc_error(iocd, "bdev_file_create", name="f", path=str(tmp_path / "no" / "such"))
    assert "no/such" in e.message or "No such file" in e.message, e
    iocd.rpc("bdev_malloc_create", name="m", size="1MiB")
    iocd.rpc("bdev_error_create", name="e", base="m")
    e = rpc_error(iocd, "bdev_error_inject", name="e", io_type="sideways", errno="EIO")
    assert "io_type" in e.message, e
    e = rpc_error(iocd, "bdev_error_inject", name="e", io_type="write", errno="EWHATEVER")
    assert "errno" in e.message, e
    e = rpc_error(iocd, "nbd_export_add", name="x", bdev="nosuch")
    assert "nosuch" in e.message, e
    e = rpc_error(iocd, "nbd_export_remove", name="nosuch")
    assert "nosuch" in e.message, e


def test_rpc_errors_unknown_method(iocd):
    e = rpc_error(iocd, "bdev_frobnicate")
    assert e.code == -32601, e
    assert "bdev_frobnicate" in e.message
    assert "bdev_frobnicate" not in iocd.rpc("rpc_get_methods")


def test_rpc_errors_duplicate_name(iocd):
    iocd.rpc("bdev_malloc_create", name="d", size="1MiB")
    e = rpc_error(iocd, "bdev_malloc_create", name="d", size="2MiB")
    assert "d" in e.message and "exist" in e.message, e
    (b,) = [b for b in iocd.rpc("bdev_list") if b["name"] == "d"]
    assert b["size"] == 1 << 20
    iocd.rpc("nbd_export_add", name="d", bdev="d")
    e = rpc_error(iocd, "nbd_export_add", name="d", bdev="d")
    assert "exist" in e.message, e


def test_rpc_errors_delete_in_use(iocd):
    iocd.rpc("bdev_malloc_create", name="m", size="8MiB")
    iocd.rpc("nbd_export_add", name="exp", bdev="m")
    e = rpc_error(iocd, "bdev_delete", name="m")
    assert "in use" in e.message, e
    assert "m" in [b["name"] for b in iocd.rpc("bdev_list")]
    # a stacked bdev holds its base the same way
    iocd.rpc("bdev_malloc_create", name="base", size="8MiB")
    iocd.rpc("bdev_error_create", name="err", base="base")
    e = rpc_error(iocd, "bdev_delete", name="base")
    assert "in use" in e.message, e
    # after removing the holders, delete works
    iocd.rpc("nbd_export_remove", name="exp")
    iocd.rpc("bdev_delete", name="m")
    iocd.rpc("bdev_delete", name="err")
    iocd.rpc("bdev_delete", name="base")
    assert iocd.rpc("bdev_list") == []
    assert iocd.rpc("nbd_export_list") == []
    e = rpc_error(iocd, "bdev_delete", name="m")
    assert "m" in e.message


def test_rpc_errors_parse_error_then_recover(iocd):
    """Malformed JSON gets -32700; the same connection then serves a good request."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(iocd.sock)
        s.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": nope}\n'
                  b'{"jsonrpc": "2.0", "id": 2, "method": "bdev_list", "params": {}}\n')
        dec = json.JSONDecoder()
        buf, replies = "", []
        while len(replies) < 2:
            chunk = s.recv(65536)
            assert chunk, f"connection closed; got {replies}"
            buf += chunk.decode()
            while True:
                buf = buf.lstrip()
                try:
                    obj, n = dec.raw_decode(buf)
                except ValueError:
                    break
                replies.append(obj)
                buf = buf[n:]
    assert replies[0]["error"]["code"] == -32700, replies
    assert replies[1] == {"jsonrpc": "2.0", "id": 2, "result": []}, replies
