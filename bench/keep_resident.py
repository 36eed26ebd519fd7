#!/usr/bin/python3
"""Keep a file in the page cache for the length of a benchmark.

This VM's kernel reclaims idle page-cache pages within a minute or two, so a
file read once at the start is back on disk by the third workload and the
benchmark would measure the disk, differently for each server. This helper
maps the file shared and read-only, mlock()s the mapping (root or
CAP_IPC_LOCK), and also touches one byte per page every few seconds, in case
the lock fails. Pages written by a server through its own descriptor are the
same page-cache pages, so they stay resident too.

    keep_resident.py FILE [PIDFILE]

Runs until SIGTERM/SIGINT or until its parent exits.
"""
import ctypes
import mmap
import os
import signal
import sys
import time

PAGE = mmap.PAGESIZE
TOUCH_EVERY = 5.0


def main():
    path = sys.argv[1]
    parent = os.getppid()
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
    os.close(fd)
    # Python's mmap does not expose its address, so lock a second mapping of
    # the same file made through libc: MAP_SHARED, hence the same pages.
    locked = False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                              ctypes.c_int, ctypes.c_int, ctypes.c_long]
        libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        fd2 = os.open(path, os.O_RDONLY)
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd2, 0)
        os.close(fd2)
        if addr is not None and addr != ctypes.c_void_p(-1).value:
            locked = libc.mlock(addr, size) == 0
    except OSError:
        pass
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    print(f"keep_resident: {path}: {size >> 20} MiB mapped, "
          f"{'mlocked' if locked else 'NOT locked (touching only)'}", file=sys.stderr)
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as f:
            f.write(f"{os.getpid()}\n")
    while not stop and os.getppid() == parent:
        for off in range(0, size, PAGE):
            m[off]
        t = time.monotonic() + TOUCH_EVERY
        while not stop and time.monotonic() < t and os.getppid() == parent:
            time.sleep(0.2)
    m.close()


if __name__ == "__main__":
    main()
