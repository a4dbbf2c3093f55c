#!/usr/bin/env python3
"""Drops the page cache of every file under the given directories, for cold reads:
    evict.py DIR...
It syncs, then calls posix_fadvise(POSIX_FADV_DONTNEED) on each file, which evicts that
file's clean pages without privileges and without touching anyone else's page cache (the
machine may be shared). With BENCH_DROP_CACHES=1 it first also tries the global
`echo 3 > /proc/sys/vm/drop_caches`. Prints one line:
    EVICT files=N bytes=B allocated=A resident_before=X resident_after=Y drop_caches=skipped|ok|denied vanished=V
(resident_* from mincore(2), in bytes; vanished: files deleted by the broker between the
directory walk and their eviction). A failing mmap/mincore/fadvise is an error (exit status 1),
never counted as "not resident": resident_after is the proof that the read is cold.
"""
import ctypes
import ctypes.util
import mmap
import os
import sys

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
PAGE = os.sysconf("SC_PAGE_SIZE")
MAP_FAILED = ctypes.c_void_p(-1).value


def resident(fd, size):
    if size == 0:
        return 0
    addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if addr in (None, MAP_FAILED):
        err = ctypes.get_errno()
        raise OSError(err, f"mmap: {os.strerror(err)}")
    try:
        pages = (size + PAGE - 1) // PAGE
        vec = ctypes.create_string_buffer(pages)
        if libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"mincore: {os.strerror(err)}")
        return sum(b & 1 for b in vec.raw) * PAGE
    finally:
        libc.munmap(addr, size)


def files(dirs):
    for d in dirs:
        for root, _, names in os.walk(d):
            for n in names:
                p = os.path.join(root, n)
                if os.path.isfile(p) and not os.path.islink(p):
                    yield p


def main():
    paths = list(files(sys.argv[1:]))
    if not paths:
        sys.exit(f"evict: no files under {' '.join(sys.argv[1:])}")
    before = 0
    vanished = set()
    for p in paths:
        try:
            fd = os.open(p, os.O_RDONLY)
        except FileNotFoundError:  # deleted by the running broker since the walk
            vanished.add(p)
            continue
        try:
            st = os.fstat(fd)
            # cap at the allocated size: mincore counts mapped pages of sparse holes too
            # (Kafka preallocates its index files)
            before += min(resident(fd, st.st_size), st.st_blocks * 512)
        finally:
            os.close(fd)
    os.sync()
    dropped = "skipped"
    if os.environ.get("BENCH_DROP_CACHES") == "1":
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
            dropped = "ok"
        except OSError:
            dropped = "denied"
    n = total = alloc = after = 0
    for p in paths:
        if p in vanished:
            continue
        try:
            fd = os.open(p, os.O_RDONLY)
        except FileNotFoundError:
            vanished.add(p)
            continue
        try:
            st = os.fstat(fd)
            size = st.st_size
            alloc += st.st_blocks * 512
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            after += min(resident(fd, size), st.st_blocks * 512)
            n += 1
            total += size
        finally:
            os.close(fd)
    print(f"EVICT files={n} bytes={total} allocated={alloc} resident_before={before} resident_after={after} drop_caches={dropped} vanished={len(vanished)}")


if __name__ == "__main__":
    main()
