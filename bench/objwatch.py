#!/usr/bin/env python3
"""Counts requests to a local-directory object store (Stratus' file:// store) with inotify:
    objwatch.py OBJECTS_DIR OUT
Watches OBJECTS_DIR and every directory created under it, and appends one line per event:
    G <epoch> <path>   a GET: a file under OBJECTS_DIR opened read-only and closed
                       (object_store's local backend opens the file for every ranged read)
    P <epoch> <path>   a new object (its final name appears; staging names "...#N" and
                       files under _staging/ are skipped)
A read-only open within 1 s of the object's creation is not a GET but the broker fsyncing
the object it has just written, and is skipped; except for a flush's WAL object
(<incarnation>-<seq>.wal), which the broker writes in place and fsyncs through the file it
wrote, so that its first read is a GET however soon it comes. Directory opens (fsyncs) are skipped too.
Start it before the broker and stop it (SIGTERM) while other tools read the files.
Lost events are written as lines starting with "# LOST" (inotify queue overflow, a directory
that could not be watched or scanned); bench/report.py shows no GET figure for a run that
has one.
"""
import ctypes
import os
import re
import select
import signal
import struct
import sys
import time

IN_CLOSE_NOWRITE = 0x00000010
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_Q_OVERFLOW = 0x00004000
IN_ISDIR = 0x40000000
MASK = IN_CLOSE_NOWRITE | IN_MOVED_TO | IN_CREATE
FSYNC_WINDOW = 1.0
# A flush's WAL object: written in place and fsynced through its own file descriptor.
WAL_FLUSH_OBJECT = re.compile(r"[0-9a-f]{16}-[0-9]{20}\.wal")


def main():
    root, out = sys.argv[1], sys.argv[2]
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        sys.exit(f"inotify_init1: errno {ctypes.get_errno()}")
    dirs = {}  # watch descriptor -> directory
    created = {}  # path -> creation time, while a fsync open may still come

    def watch(d):
        wd = libc.inotify_add_watch(fd, d.encode(), MASK)
        if wd < 0:
            print(f"# LOST: cannot watch {d}: errno {ctypes.get_errno()}", file=f)
            return
        dirs[wd] = d
        # whatever was created before the watch was added (a new directory's first object:
        # its fsync open may still come)
        try:
            for e in os.scandir(d):
                if e.is_dir(follow_symlinks=False):
                    watch(e.path)
                elif started and "#" not in e.name:
                    created[e.path] = time.time()
        except FileNotFoundError:  # removed again before the scan: nothing in it to count
            pass
        except OSError as e:
            print(f"# LOST: cannot scan {d}: {e}", file=f)

    stop = []
    started = False  # files present at start are old objects, not new ones
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    with open(out, "a", buffering=1) as f:
        os.makedirs(root, exist_ok=True)
        watch(root)
        started = True
        f.write(f"# watching {root} since {time.time():.3f}\n")
        while not stop:
            try:
                r, _, _ = select.select([fd], [], [], 0.5)
            except InterruptedError:
                continue
            now = time.time()
            if len(created) > 10000:
                for p in [p for p, t in created.items() if now - t > FSYNC_WINDOW]:
                    del created[p]
            if not r:
                continue
            try:
                buf = os.read(fd, 1 << 20)
            except BlockingIOError:
                continue
            i = 0
            lines = []
            while i + 16 <= len(buf):
                wd, mask, _cookie, n = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16:i + 16 + n].split(b"\0", 1)[0].decode(errors="replace")
                i += 16 + n
                if mask & IN_Q_OVERFLOW:
                    lines.append("# LOST: inotify queue overflow\n")
                    continue
                if not name or wd not in dirs:
                    continue
                path = os.path.join(dirs[wd], name)
                if os.path.relpath(path, root).split(os.sep, 1)[0] == "_staging":
                    continue  # objects being written a slice at a time: counted once linked
                if mask & IN_ISDIR:
                    if mask & (IN_CREATE | IN_MOVED_TO):
                        watch(path)
                    continue
                if mask & (IN_CREATE | IN_MOVED_TO):
                    if "#" not in name:
                        if not WAL_FLUSH_OBJECT.fullmatch(name):
                            created[path] = now
                        lines.append(f"P {now:.3f} {os.path.relpath(path, root)}\n")
                elif mask & IN_CLOSE_NOWRITE:
                    t = created.pop(path, None)
                    if t is not None and now - t <= FSYNC_WINDOW:
                        continue
                    lines.append(f"G {now:.3f} {os.path.relpath(path, root)}\n")
            f.write("".join(lines))


if __name__ == "__main__":
    main()
