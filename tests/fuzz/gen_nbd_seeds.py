#!/usr/bin/env python3
"""Write the seed corpus of fuzz_nbd to tests/fuzz/seeds/nbd/.

Each seed is one mode byte (see fuzz_nbd.c) followed by a client byte stream.
Run from anywhere: python3 tests/fuzz/gen_nbd_seeds.py
"""
import os
import struct

OPTS_MAGIC = 0x49484156454F5054
REQ_MAGIC = 0x25609513
OPT = dict(EXPORT_NAME=1, ABORT=2, LIST=3, INFO=6, GO=7, STRUCTURED_REPLY=8,
           LIST_META_CONTEXT=9, SET_META_CONTEXT=10)
CMD = dict(READ=0, WRITE=1, DISC=2, FLUSH=3, TRIM=4, CACHE=5, WRITE_ZEROES=6,
           BLOCK_STATUS=7)


def opt(name, data=b""):
    return struct.pack(">QII", OPTS_MAGIC, OPT[name], len(data)) + data


def info(name, reqs=()):
    n = name.encode()
    return struct.pack(">I", len(n)) + n + struct.pack(">H", len(reqs)) + b"".join(
        struct.pack(">H", r) for r in reqs)


def meta(name, queries):
    n = name.encode()
    out = struct.pack(">I", len(n)) + n + struct.pack(">I", len(queries))
    for q in queries:
        out += struct.pack(">I", len(q)) + q.encode()
    return out


def req(cmd, handle, offset, count, flags=0, payload=b""):
    return struct.pack(">IHHQQI", REQ_MAGIC, flags, CMD[cmd], handle, offset, count) + payload


def commands():
    return (req("WRITE", 1, 0, 4096, payload=b"\xab" * 4096)
            + req("READ", 2, 0, 4096)
            + req("WRITE", 3, 8192, 512, flags=1, payload=b"\x01" * 512)
            + req("FLUSH", 4, 0, 0)
            + req("TRIM", 5, 0, 65536)
            + req("WRITE_ZEROES", 6, 4096, 4096, flags=2)
            + req("BLOCK_STATUS", 7, 0, 1 << 20)
            + req("BLOCK_STATUS", 8, 0, 65536, flags=8)
            + req("CACHE", 9, 0, 4096)
            + req("READ", 10, 0, 512 * 1024)
            + req("DISC", 11, 0, 0))


def full_handshake():
    return (struct.pack(">I", 3)
            + opt("LIST")
            + opt("INFO", info("m0", (1, 2, 3)))
            + opt("STRUCTURED_REPLY")
            + opt("LIST_META_CONTEXT", meta("m0", ["base:"]))
            + opt("SET_META_CONTEXT", meta("m0", ["base:allocation"]))
            + opt("GO", info("m0", (3,))))


SEEDS = {
    "full-handshake-structured": bytes([0]) + full_handshake() + commands(),
    "canned-handshake": bytes([1]) + commands(),
    "canned-small-pieces": bytes([1 | 2 | 4]) + commands(),
    "export-name-simple": bytes([0]) + struct.pack(">I", 1) + opt("EXPORT_NAME", b"m0")
    + commands(),
    "read-only": bytes([0]) + struct.pack(">I", 3) + opt("GO", info("ro")) + commands(),
    "abort": bytes([0]) + struct.pack(">I", 1) + opt("INFO", info("nope")) + opt("ABORT"),
    "peer-gone": bytes([1 | 8]) + req("READ", 1, 0, 4096) + req("WRITE", 2, 0, 4096)[:40],
}

if __name__ == "__main__":
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds", "nbd")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
