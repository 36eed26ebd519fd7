"""Several connections in one session (MC/S, RFC 7143), driven by the small
socket initiator in iscsi_raw.py, since no Debian client opens more than one
connection per session: login with the session's TSIH, IO on every
connection, commands put on the wire out of CmdSN order across connections,
logout of one connection from another, logout of the session; iocd runs two
reactors, so joining connections accepted on the other reactor must move to
the session's one."""
import os
import struct

from ioc_e2e import MiB, free_port
from iscsi_util import INITIATOR, IscsiIocd
from iscsi_raw import Conn, Session, cdb_rw16, cdb_tur, clear_power_on_ua

BLOCK = 512


def _mcs_iocd(make_iocd, tmp_path, name, size="16MiB"):
    port = free_port()
    d = IscsiIocd(make_iocd("--cores", "2", "--iscsi-listen", f"127.0.0.1:{port}"), port)
    iqn = d.file_target(name, tmp_path / f"{name}.img", size=size)
    return d, iqn


def _session_of(d, iqn):
    t = d.rpc("iscsi_target_list")
    t = [x for x in t if x["iqn"] == iqn][0]
    return t


def test_iscsi_mcs_io_on_every_connection(make_iocd, tmp_path):
    d, iqn = _mcs_iocd(make_iocd, tmp_path, "mcs")
    sess = Session(INITIATOR, iqn)
    conns = [Conn(sess, "127.0.0.1", d.port, cid) for cid in (1, 2, 3)]
    got = conns[0].login([("MaxConnections", "8"), ("ImmediateData", "Yes"),
                          ("InitialR2T", "Yes"), ("FirstBurstLength", "65536")])
    assert got["MaxConnections"] == "8"
    assert sess.tsih != 0
    # a new I_T nexus: the first command reports the power-on unit attention, once
    first, second = clear_power_on_ua(conns[0])
    assert first == (2, 6, (0x29, 0x00)) and second == 0
    for c in conns[1:]:
        joined = c.login()
        assert "MaxConnections" not in joined  # leading-only: not renegotiated
    # one session, three connections, all on the session's reactor (the joiners
    # were accepted round-robin, so at least one came from the other reactor)
    t = _session_of(d, iqn)
    assert t["sessions"] == 1
    assert len(t["session_list"]) == 1
    s = t["session_list"][0]
    assert s["tsih"] == sess.tsih and sorted(s["cids"]) == [1, 2, 3]
    assert s["max_connections"] == 8
    mine = [c for c in t["connections"] if c["tsih"] == sess.tsih]
    assert sorted(c["cid"] for c in mine) == [1, 2, 3]
    assert len({c["reactor"] for c in mine}) == 1
    assert all(c["state"] == "full" for c in mine)
    # the joiners see no second power-on UA: same nexus
    assert conns[1].cmd(cdb_tur()).status == 0
    # writes on every connection (immediate data, then R2T for the rest), pipelined
    pats = {}
    itts = []
    for i in range(12):
        c = conns[i % 3]
        data = os.urandom(64 * 1024 + i * BLOCK)
        lba = i * 256
        pats[lba] = data
        itts.append((c, c.send_cmd(cdb_rw16(0x8A, lba, len(data) // BLOCK), data=data)))
    for c, itt in itts:
        assert c.wait(itt).status == 0
    # read each back on a different connection than the one that wrote it
    for i, (lba, data) in enumerate(pats.items()):
        c = conns[(i + 1) % 3]
        r = c.cmd(cdb_rw16(0x88, lba, len(data) // BLOCK), read_len=len(data))
        assert r.status == 0 and r.data == data, f"lba {lba}"
    with open(tmp_path / "mcs.img", "rb") as f:
        for lba, data in pats.items():
            f.seek(lba * BLOCK)
            assert f.read(len(data)) == data
    # CmdSN order across connections: N+1 goes out on conn 2 before N on conn 1;
    # the target holds N+1 until N arrived, then both complete
    n = sess.next_cmdsn()
    n1 = sess.next_cmdsn()
    late = conns[1].send_cmd(cdb_rw16(0x88, 0, 8), read_len=8 * BLOCK, cmdsn=n1)
    early = conns[0].send_cmd(cdb_rw16(0x88, 256, 8), read_len=8 * BLOCK, cmdsn=n)
    assert conns[0].wait(early).data == pats[256][:8 * BLOCK]
    assert conns[1].wait(late).data == pats[0][:8 * BLOCK]
    assert conns[1].exp_cmdsn == (n1 + 1) & 0xFFFFFFFF
    # StatSN is per connection: each connection's responses count from its own login
    assert len({c.exp_statsn for c in conns}) > 1
    # logout of connection 2, asked on connection 1: 2 is closed, 1 and 3 go on
    assert conns[0].logout(reason=1, cid=2) == 0
    assert conns[1].closed_by_target()
    assert conns[2].cmd(cdb_tur()).status == 0
    t = _session_of(d, iqn)
    assert sorted(t["session_list"][0]["cids"]) == [1, 3]
    # an unknown CID: "CID not found" (1)
    assert conns[2].logout(reason=1, cid=77) == 1
    # logout of the session on connection 3: connection 1 closes too, the session ends
    assert conns[2].logout(reason=0) == 0
    assert conns[0].closed_by_target()
    for c in conns:
        c.close()
    for _ in range(100):
        if _session_of(d, iqn)["sessions"] == 0:
            break
        __import__("time").sleep(0.05)
    t = _session_of(d, iqn)
    assert t["sessions"] == 0 and t["session_list"] == [] and t["connections"] == []
    assert d.alive()


def test_iscsi_mcs_join_refused_and_failure(make_iocd, tmp_path):
    d, iqn = _mcs_iocd(make_iocd, tmp_path, "mcs2")
    sess = Session(INITIATOR, iqn, isid=b"\x80\x00\x00\x00\x42\x01")
    a = Conn(sess, "127.0.0.1", d.port, 1)
    a.login([("MaxConnections", "2")])
    clear_power_on_ua(a)
    b = Conn(sess, "127.0.0.1", d.port, 2)
    b.login()
    # MaxConnections=2 was negotiated: a third connection is refused (0x0206)
    c = Conn(sess, "127.0.0.1", d.port, 3)
    try:
        c.login()
        raise AssertionError("third connection was accepted")
    except Exception as e:
        assert "0x0206" in str(e), e
    c.close()
    # a wrong TSIH: "session does not exist" (0x020a)
    other = Session(INITIATOR, iqn, isid=sess.isid)
    other.tsih = (sess.tsih + 1000) & 0xFFFF or 1
    x = Conn(other, "127.0.0.1", d.port, 9)
    try:
        x.login()
        raise AssertionError("unknown TSIH was accepted")
    except Exception as e:
        assert "0x020a" in str(e), e
    x.close()
    # reusing a live CID reinstates that connection: the old one is closed
    b2 = Conn(sess, "127.0.0.1", d.port, 2)
    b2.login()
    assert b.closed_by_target()
    b.close()
    assert b2.cmd(cdb_tur()).status == 0
    assert a.cmd(cdb_tur()).status == 0
    # at ERL 0 a connection that fails takes the session with it
    b2.sock.sendall(b"\xff" * 48)
    assert b2.closed_by_target()
    assert a.closed_by_target()
    a.close()
    b2.close()
    # a new session with a fresh TSIH works, and gets its own power-on UA
    sess2 = Session(INITIATOR, iqn, isid=sess.isid)
    n = Conn(sess2, "127.0.0.1", d.port, 1)
    n.login()
    assert sess2.tsih != 0
    first, second = clear_power_on_ua(n)
    assert first[2] == (0x29, 0x00) and second == 0
    assert n.logout(reason=0) == 0
    n.close()
    assert d.alive()


def test_iscsi_mcs_cli_lists_connections(make_iocd, tmp_path):
    d, iqn = _mcs_iocd(make_iocd, tmp_path, "mcs3", size="8MiB")
    sess = Session(INITIATOR, iqn)
    conns = [Conn(sess, "127.0.0.1", d.port, cid) for cid in (5, 6)]
    conns[0].login([("MaxConnections", "2")])
    conns[1].login()
    out = d.iocctl("iscsi", "target", "list").stdout
    lines = out.splitlines()
    sline = [ln for ln in lines if ln.strip().startswith("session")]
    assert len(sline) == 1, out
    assert sline[0].split()[1] == str(sess.tsih) and "connections 2" in sline[0], out
    clines = [ln for ln in lines if ln.strip().startswith("cid")]
    assert sorted(int(ln.split()[1]) for ln in clines) == [5, 6], out
    assert conns[0].logout(reason=0) == 0
    for c in conns:
        c.close()
