"""kill -9 of iocd at random points of a mixed pool workload, 50 times.

Each iteration restarts iocd with `--pool PATH`, checks the pool offline
first (`iocctl pool check` must say clean), then verifies every 4 KiB block
of the volume against a model and every snapshot byte for byte, then runs a
random workload (NBD writes, FUA writes, trims, flushes from the test's own
NBD client, writes + flush from qemu-io, and volume_snapshot, snapshot
delete (a merge), volume_create/volume_delete over RPC) and kills iocd with
SIGKILL at a random instant.

The model: every block has the content known durable (written before a
completed FLUSH, with FUA, or before a completed RPC, which commits) plus
the contents written since, any of which may have landed. Operations cut
short by the kill count as "may have happened". Seeded: the seed is in the
failure message.
"""
import os
import random
import signal
import struct
import threading
import time

import pytest

from ioc_e2e import (NBD_CMD_FLAG_FUA, NBD_CMD_TRIM, MiB, NbdClient, NbdError, RpcError,
                     need, run)

BLK = 4096
VOL = 8 * MiB
NBLK = VOL // BLK
ITERATIONS = 50


def content(key):
    """The 4 KiB a block holds for a model key."""
    if key == 0:
        return bytes(BLK)
    if key[0] == "fill":                        # qemu-io -P byte
        return bytes([key[1]]) * BLK
    return struct.pack("<QQ", key[1], key[2]) * (BLK // 16)   # ("pat", block, version)


class Model:
    def __init__(self):
        self.durable = [0] * NBLK               # key known on disk
        self.maybe = [set() for _ in range(NBLK)]  # keys written since, may have landed
        self.latest = [0] * NBLK
        self.snaps = {}                          # name -> (list of keys, certain)

    def wrote(self, blk, key, durable=False):
        self.latest[blk] = key
        if durable:
            self.durable[blk] = key
            self.maybe[blk].clear()
        else:
            self.maybe[blk].add(key)

    def settle(self):
        """A completed flush or committed RPC: everything acknowledged is durable."""
        self.durable = list(self.latest)
        for m in self.maybe:
            m.clear()

    def allowed(self, blk):
        return {self.durable[blk], *self.maybe[blk]}


class Killed(Exception):
    pass


def workload(d, nbd, model, rng, it, state):
    """Random operations until iocd dies; records what was acknowledged."""
    version = it * 100000
    while True:
        op = rng.random()
        try:
            if op < 0.45:
                blk, n = rng.randrange(NBLK - 16), rng.randint(1, 16)
                fua = rng.random() < 0.2
                version += 1
                keys = [("pat", blk + i, version) for i in range(n)]
                for i, k in enumerate(keys):
                    model.maybe[blk + i].add(k)          # in flight: may land
                err = nbd.write(blk * BLK, b"".join(content(k) for k in keys),
                                NBD_CMD_FLAG_FUA if fua else 0)
                assert err == 0, f"write failed with NBD error {err}"
                for i, k in enumerate(keys):
                    model.wrote(blk + i, k, durable=fua)
            elif op < 0.55:
                blk = rng.randrange(NBLK // 16) * 16      # whole 64 KiB clusters
                for i in range(16):
                    model.maybe[blk + i].add(0)
                err = nbd.cmd(NBD_CMD_TRIM, blk * BLK, 16 * BLK)[0]
                assert err == 0, f"trim failed with NBD error {err}"
                for i in range(16):
                    model.wrote(blk + i, 0)
            elif op < 0.7:
                err = nbd.flush()
                assert err == 0, f"flush failed with NBD error {err}"
                model.settle()
            elif op < 0.75:
                pat, blk = rng.randrange(1, 255), rng.randrange(NBLK - 16)
                for i in range(16):
                    model.maybe[blk + i].add(("fill", pat))
                p = run([need("qemu-io"), "-f", "raw", d.uri("v"), "-c",
                         f"write -P {pat} {blk * BLK} {16 * BLK}", "-c", "flush"], check=False)
                if p.returncode != 0 or "failed" in (p.stdout + p.stderr).lower():
                    raise Killed()
                for i in range(16):
                    model.wrote(blk + i, ("fill", pat))
                model.settle()
            elif op < 0.85:
                state["snap"] += 1
                name = f"s{state['snap']}"
                model.snaps[name] = (list(model.latest), False)
                d.rpc("volume_snapshot", volume="p/v", name=name)
                model.settle()
                model.snaps[name] = (list(model.latest), True)
                if len(model.snaps) > 2:
                    old = min(model.snaps, key=lambda s: int(s[1:]))
                    model.snaps[old] = (model.snaps[old][0], False)
                    d.rpc("volume_delete", volume=f"p/{old}")
                    del model.snaps[old]
            else:
                state["tmp"] += 1
                name = f"t{state['tmp']}"
                d.rpc("volume_create", pool="p", name=name, size="1MiB")
                model.settle()
                d.rpc("volume_delete", volume=f"p/{name}")
        except (OSError, NbdError, RpcError, Killed):
            if not state["killed"].wait(5):
                raise
            return


def workload_thread(d, nbd, model, rng, it, state):
    try:
        workload(d, nbd, model, rng, it, state)
    except BaseException as e:   # handed to the test thread
        state["error"] = e


def verify(d, model, seed, it):
    nbd = NbdClient(d.port, "v")
    try:
        for off in range(0, VOL, MiB):
            data = nbd.read(off, MiB)
            for j in range(MiB // BLK):
                blk = off // BLK + j
                got = data[j * BLK:(j + 1) * BLK]
                allowed = model.allowed(blk)
                match = [k for k in allowed if content(k) == got]
                assert match, (f"seed {seed} iteration {it}: block {blk} holds none of "
                               f"{sorted(map(str, allowed))} (starts {got[:16].hex()})")
                model.durable[blk] = match[0]       # what landed is now on disk
                model.latest[blk] = match[0]
                model.maybe[blk].clear()
    finally:
        nbd.close()
    for name, (keys, certain) in list(model.snaps.items()):
        try:
            d.rpc("nbd_export_add", name=name, bdev=f"p/{name}", read_only=True)
        except RpcError:
            assert not certain, f"seed {seed} iteration {it}: snapshot {name} is gone"
            del model.snaps[name]
            continue
        snap = NbdClient(d.port, name)
        try:
            for off in range(0, VOL, MiB):
                data = snap.read(off, MiB)
                want = b"".join(content(keys[off // BLK + j]) for j in range(MiB // BLK))
                assert data == want, (f"seed {seed} iteration {it}: snapshot {name} "
                                      f"changed in [{off}, {off + MiB})")
        finally:
            snap.close()
        d.rpc("nbd_export_remove", name=name)
        model.snaps[name] = (keys, True)


@pytest.mark.slow
def test_pool_kill9_loop(make_iocd, tmp_path):
    seed = int(os.environ.get("IOC_SEED", time.time_ns() % 1000000))
    rng = random.Random(seed)
    img = tmp_path / "p.img"
    model = Model()
    state = {"snap": 0, "tmp": 0}
    d = make_iocd()
    d.rpc("pool_create", name="p", path=str(img), size="64MiB", cluster_size=64 * 1024)
    d.rpc("volume_create", pool="p", name="v", size=VOL)
    for it in range(ITERATIONS):
        if it > 0:
            p = run([str(d.iocctl_bin), "pool", "check", str(img)], check=False)
            assert p.returncode == 0 and "clean" in p.stdout, \
                f"seed {seed} iteration {it}: pool check:\n{p.stdout}{p.stderr}"
            d = make_iocd("--pool", str(img))
            for name in list(d.rpc("volume_list", pool="p")):
                vname = name["name"]
                if vname.startswith("t"):          # a scratch volume cut short
                    d.rpc("volume_delete", volume=f"p/{vname}")
                elif vname.startswith("s") and vname not in model.snaps:
                    model.snaps[vname] = (None, False)
            for name, (keys, _c) in list(model.snaps.items()):
                if keys is None:                    # a snapshot whose RPC was cut short
                    d.rpc("volume_delete", volume=f"p/{name}")
                    del model.snaps[name]
        d.rpc("nbd_export_add", name="v", bdev="p/v")
        verify(d, model, seed, it)
        nbd = NbdClient(d.port, "v")
        state["killed"] = threading.Event()
        t = threading.Thread(target=workload_thread, args=(d, nbd, model, rng, it, state))
        t.start()
        time.sleep(rng.uniform(0.05, 0.5))
        state["killed"].set()
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(10)
        t.join(30)
        assert not t.is_alive(), "the workload did not notice the kill"
        if "error" in state:
            raise state["error"]
        nbd.s.close()
        d.stop()
    p = run([str(d.iocctl_bin), "pool", "check", str(img)], check=False)
    assert p.returncode == 0, p.stdout + p.stderr
