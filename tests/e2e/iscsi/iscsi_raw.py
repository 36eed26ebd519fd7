"""A small iSCSI initiator over plain sockets, for what no Debian client does:
several connections in one session (MC/S). libiscsi (iscsi-test-cu, qemu,
iscsi-*) opens one connection per session, and the kernel initiator
(open-iscsi) is neither usable here nor MC/S-capable.

It speaks RFC 7143 without digests, at ErrorRecoveryLevel 0: login (security
stage with AuthMethod=None, then operational), SCSI commands with immediate
data, Data-Out on R2T and Data-In, NOP-In answers, logout. A Session holds
what the connections share: ISID, TSIH and the CmdSN counter; a Conn has its
CID, ITTs and ExpStatSN. Commands can be sent and completed separately
(`send_cmd`, `wait`), so a test can put them on the wire out of CmdSN order
across connections.
"""
import socket
import struct

OP_NOP_OUT, OP_SCSI_CMD, OP_LOGIN_REQ, OP_TEXT_REQ, OP_DATA_OUT, OP_LOGOUT_REQ = (
    0x00, 0x01, 0x03, 0x04, 0x05, 0x06)
OP_NOP_IN, OP_SCSI_RSP, OP_LOGIN_RSP, OP_DATA_IN, OP_LOGOUT_RSP, OP_R2T, OP_REJECT = (
    0x20, 0x21, 0x23, 0x25, 0x26, 0x31, 0x3f)
RSVD = 0xFFFFFFFF


class IscsiError(Exception):
    pass


def text(keys):
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in keys)


def parse_text(data):
    out = {}
    for pair in data.split(b"\0"):
        if b"=" in pair:
            k, v = pair.decode().split("=", 1)
            out[k] = v
    return out


class Result:
    def __init__(self, status, data=b"", sense=b""):
        self.status = status
        self.data = data
        self.sense = sense

    @property
    def sense_key(self):
        return self.sense[2] & 0x0F if len(self.sense) > 2 else None

    @property
    def asc_ascq(self):
        return (self.sense[12], self.sense[13]) if len(self.sense) > 13 else None


class Session:
    """What connections of one session share."""

    def __init__(self, initiator, target, isid=b"\x80\x12\x34\x56\x00\x01"):
        self.initiator = initiator
        self.target = target
        self.isid = isid
        self.tsih = 0
        self.cmdsn = 1
        self.params = {}

    def next_cmdsn(self):
        n = self.cmdsn
        self.cmdsn = (self.cmdsn + 1) & 0xFFFFFFFF
        return n


class Conn:
    def __init__(self, sess, host, port, cid, timeout=10):
        self.sess = sess
        self.cid = cid
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.itt = cid << 16
        self.exp_statsn = 0
        self.max_cmdsn = None
        self.exp_cmdsn = None
        self.target_mrdsl = 8192
        self.pending = {}     # ITT -> state of a command in flight
        self.done = {}        # ITT -> Result

    # ------------------------------------------------------------ wire
    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("connection closed by the target")
            buf += chunk
        return buf

    def recv_pdu(self):
        bhs = self._recv_exact(48)
        dlen = int.from_bytes(bhs[5:8], "big")
        data = self._recv_exact((dlen + 3) & ~3)[:dlen] if dlen else b""
        return bhs, data

    def send_pdu(self, bhs, data=b""):
        bhs = bytearray(bhs)
        bhs[5:8] = len(data).to_bytes(3, "big")
        pad = (-len(data)) % 4
        self.sock.sendall(bytes(bhs) + data + b"\0" * pad)

    def _new_itt(self):
        self.itt = (self.itt + 1) & 0xFFFFFFFF
        return self.itt

    def _sn_update(self, bhs, has_statsn=True):
        if has_statsn:
            self.exp_statsn = (struct.unpack(">I", bhs[24:28])[0] + 1) & 0xFFFFFFFF
        self.exp_cmdsn, self.max_cmdsn = struct.unpack(">II", bhs[28:36])

    # ------------------------------------------------------------ login
    def _login_pdu(self, csg, nsg, transit, keys):
        bhs = bytearray(48)
        bhs[0] = OP_LOGIN_REQ | 0x40
        bhs[1] = (0x80 if transit else 0) | (csg << 2) | nsg
        bhs[8:14] = self.sess.isid
        struct.pack_into(">HIH", bhs, 14, self.sess.tsih, self._new_itt(), self.cid)
        struct.pack_into(">II", bhs, 24, self.sess.cmdsn, self.exp_statsn)
        self.send_pdu(bhs, text(keys))
        rsp, data = self.recv_pdu()
        if rsp[0] & 0x3F != OP_LOGIN_RSP:
            raise IscsiError(f"login: opcode 0x{rsp[0]:02x}")
        status = rsp[36] << 8 | rsp[37]
        if status != 0:
            raise IscsiError(f"login refused: status 0x{status:04x}")
        self.exp_statsn = (struct.unpack(">I", rsp[24:28])[0] + 1) & 0xFFFFFFFF
        self.exp_cmdsn, self.max_cmdsn = struct.unpack(">II", rsp[28:36])
        return rsp, parse_text(data)

    def login(self, op_keys=()):
        """Security stage (no auth), then operational stage to full feature."""
        sec = [("InitiatorName", self.sess.initiator), ("SessionType", "Normal"),
               ("TargetName", self.sess.target), ("AuthMethod", "None")]
        rsp, got = self._login_pdu(0, 1, True, sec)
        keys = [("HeaderDigest", "None"), ("DataDigest", "None"),
                ("MaxRecvDataSegmentLength", "65536")] + list(op_keys)
        rsp, got2 = self._login_pdu(1, 3, True, keys)
        got.update(got2)
        if not rsp[1] & 0x80 or rsp[1] & 3 != 3:
            raise IscsiError(f"login did not reach full feature phase: flags 0x{rsp[1]:02x}")
        tsih = struct.unpack(">H", rsp[14:16])[0]
        if self.sess.tsih == 0:
            self.sess.tsih = tsih
            self.sess.params = got
        elif tsih != self.sess.tsih:
            raise IscsiError(f"joined TSIH {tsih}, asked for {self.sess.tsih}")
        if "MaxRecvDataSegmentLength" in got:
            self.target_mrdsl = int(got["MaxRecvDataSegmentLength"])
        return got

    # ------------------------------------------------------------ commands
    def send_cmd(self, cdb, read_len=0, data=None, lun=0, cmdsn=None):
        """Send a SCSI command; returns its ITT. Complete it with wait(itt)."""
        itt = self._new_itt()
        if cmdsn is None:
            cmdsn = self.sess.next_cmdsn()
        edtl = len(data) if data is not None else read_len
        bhs = bytearray(48)
        bhs[0] = OP_SCSI_CMD
        flags = 0x80 | 0x01  # F, SIMPLE
        if data is not None:
            flags |= 0x20
        elif read_len:
            flags |= 0x40
        bhs[1] = flags
        bhs[9] = lun
        struct.pack_into(">IIII", bhs, 16, itt, edtl, cmdsn, self.exp_statsn)
        bhs[32:32 + len(cdb)] = cdb
        imm = b""
        if data is not None and self.sess.params.get("ImmediateData") == "Yes":
            first = int(self.sess.params.get("FirstBurstLength", "65536"))
            imm = data[:min(first, self.target_mrdsl)]
        self.pending[itt] = {"data": data, "in": bytearray(read_len)}
        self.send_pdu(bhs, imm)
        return itt

    def _data_out(self, itt, r2t):
        ttt, _, _, _, _, off, length = struct.unpack(">IIIIIII", r2t[20:48])
        data = self.pending[itt]["data"]
        sn = 0
        end = off + length
        while off < end:
            n = min(self.target_mrdsl, end - off)
            bhs = bytearray(48)
            bhs[0] = OP_DATA_OUT
            bhs[1] = 0x80 if off + n == end else 0
            struct.pack_into(">IIIII", bhs, 16, itt, ttt, 0, self.exp_statsn, 0)
            struct.pack_into(">II", bhs, 36, sn, off)
            self.send_pdu(bhs, data[off:off + n])
            sn += 1
            off += n

    def poll_one(self):
        """Handle one PDU from the target."""
        bhs, data = self.recv_pdu()
        op = bhs[0] & 0x3F
        itt = struct.unpack(">I", bhs[16:20])[0]
        if op == OP_R2T:
            self._sn_update(bhs, has_statsn=False)
            self._data_out(itt, bhs)
        elif op == OP_DATA_IN:
            st = self.pending[itt]
            off = struct.unpack(">I", bhs[40:44])[0]
            st["in"][off:off + len(data)] = data
            if bhs[1] & 0x01:
                self._sn_update(bhs)
                self.done[itt] = Result(bhs[3], bytes(st.pop("in")))
                del self.pending[itt]
            else:
                self._sn_update(bhs, has_statsn=False)
        elif op == OP_SCSI_RSP:
            self._sn_update(bhs)
            st = self.pending.pop(itt)
            sense = data[2:2 + struct.unpack(">H", data[:2])[0]] if len(data) >= 2 else b""
            self.done[itt] = Result(bhs[3], bytes(st["in"]), sense)
        elif op == OP_NOP_IN:
            self._sn_update(bhs)
            ttt = struct.unpack(">I", bhs[20:24])[0]
            if ttt != RSVD:
                out = bytearray(48)
                out[0] = OP_NOP_OUT | 0x40
                out[1] = 0x80
                struct.pack_into(">IIII", out, 16, RSVD, ttt, self.sess.cmdsn, self.exp_statsn)
                self.send_pdu(out)
        elif op == OP_REJECT:
            raise IscsiError(f"reject, reason 0x{bhs[2]:02x}")
        else:
            raise IscsiError(f"unexpected opcode 0x{op:02x}")
        return op, itt, bhs

    def wait(self, itt):
        while itt not in self.done:
            self.poll_one()
        return self.done.pop(itt)

    def cmd(self, cdb, read_len=0, data=None, lun=0):
        return self.wait(self.send_cmd(cdb, read_len, data, lun))

    def logout(self, reason=1, cid=None):
        """Logout request (0: session, 1: connection CID, 2: recovery); the response code."""
        bhs = bytearray(48)
        bhs[0] = OP_LOGOUT_REQ | 0x40
        bhs[1] = 0x80 | reason
        struct.pack_into(">IHH", bhs, 16, self._new_itt(), self.cid if cid is None else cid, 0)
        struct.pack_into(">II", bhs, 24, self.sess.cmdsn, self.exp_statsn)
        self.send_pdu(bhs)
        while True:
            rsp, _ = self.recv_pdu()
            if rsp[0] & 0x3F == OP_LOGOUT_RSP:
                self._sn_update(rsp)
                return rsp[2]
            if rsp[0] & 0x3F == OP_NOP_IN:
                continue
            raise IscsiError(f"logout: opcode 0x{rsp[0]:02x}")

    def closed_by_target(self, timeout=5):
        """True if the target closes the connection within timeout."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
            return True
        except socket.timeout:
            return False
        except ConnectionError:
            return True

    def close(self):
        self.sock.close()


def cdb_rw16(op, lba, blocks):
    return struct.pack(">BBQIBB", op, 0, lba, blocks, 0, 0)


def cdb_tur():
    return bytes(6)


def clear_power_on_ua(conn):
    """The first command of a new I_T nexus reports the power-on unit attention once."""
    r = conn.cmd(cdb_tur())
    first = (r.status, r.sense_key, r.asc_ascq)
    r2 = conn.cmd(cdb_tur())
    return first, r2.status
