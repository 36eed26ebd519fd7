#!/usr/bin/python3
"""Keep a file in the page cache for the length of a benchmark.

This VM's kernel reclaims idle page-cache pages within a minute or two, so a
file read once at the start is back on disk by the third workload and the
benchmark would measure the disk, differently for each server. This helper
maps the file shared and read-only, mlock()s the mapping (root or
CAP_IPC_LOCK), and also touches one byte per page every few seconds, in case
the lock fails. Pages written by a server through its own descriptor are the
same page-cache pages, so they stay resident too.

With --small-folios the file's cached pages are first dropped and read back
one 4 KiB page at a time with readahead off, so the page cache holds it in
4 KiB folios. Why: this kernel (6.18) caches ext4 files in large folios, and a
4 KiB buffered write into a large folio walks every buffer head of the folio
(ext4_block_write_begin took 81% of a server's CPU in a 4k random-write
profile). Every server and fio itself then land at 20-25k IOPS and the
benchmark measures that walk, not the servers; in 4 KiB folios fio's own
io_uring random writes went from 25k to 338k IOPS. How many of the locked
pages still sit in large folios is counted from /proc/kpageflags and printed.

    keep_resident.py [--small-folios] FILE [PIDFILE]

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


KPF_COMPOUND_HEAD = 1 << 15
KPF_COMPOUND_TAIL = 1 << 16


def load_small_folios(path):
    """Drop the file's cached pages, then read it back 4 KiB at a time."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        os.fsync(fd)  # dirty pages cannot be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead: one page per read
        buf = bytearray(PAGE)
        for off in range(0, size, PAGE):
            os.preadv(fd, [buf], off)
    finally:
        os.close(fd)


def large_folio_pages(addr, size):
    """Pages of the mapping [addr, addr+size) that belong to a large folio, or None."""
    try:
        with open("/proc/self/pagemap", "rb") as pm, open("/proc/kpageflags", "rb") as kf:
            pm.seek((addr // PAGE) * 8)
            entries = pm.read((size // PAGE) * 8)
            count = 0
            for i in range(0, len(entries), 8):
                e = int.from_bytes(entries[i:i + 8], "little")
                pfn = e & ((1 << 55) - 1)
                if not e >> 63 or pfn == 0:
                    continue  # not present, or PFNs hidden (no CAP_SYS_ADMIN)
                kf.seek(pfn * 8)
                if int.from_bytes(kf.read(8), "little") & (KPF_COMPOUND_HEAD | KPF_COMPOUND_TAIL):
                    count += 1
            return count
    except OSError:
        return None


def main():
    args = sys.argv[1:]
    small = bool(args) and args[0] == "--small-folios"
    if small:
        args = args[1:]
    path = args[0]
    parent = os.getppid()
    if small:
        load_small_folios(path)
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
    os.close(fd)
    m.madvise(mmap.MADV_RANDOM)  # a page faulted back in comes alone, not with a large folio
    m.madvise(mmap.MADV_NOHUGEPAGE)
    # Python's mmap does not expose its address, so lock a second mapping of
    # the same file made through libc: MAP_SHARED, hence the same pages.
    locked = False
    addr = None
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
    if locked:
        large = large_folio_pages(addr, size)
        what = "unknown (no /proc/kpageflags)" if large is None else f"{large} of {size // PAGE}"
        print(f"keep_resident: pages in large folios: {what}"
              f"{' (loaded in 4 KiB folios)' if small else ''}", file=sys.stderr)
    if len(args) > 1:
        with open(args[1], "w") as f:
            f.write(f"{os.getpid()}\n")
    while not stop and os.getppid() == parent:
        for off in range(0, size, PAGE):
            m[off]
        t = time.monotonic() + TOUCH_EVERY
        while not stop and time.monotonic() < t and os.getppid() == parent:
            time.sleep(0.2)
    if locked:
        large = large_folio_pages(addr, size)
        print(f"keep_resident: pages in large folios at the end: "
              f"{'unknown' if large is None else large}", file=sys.stderr)
    m.close()


if __name__ == "__main__":
    main()
