#!/usr/bin/env python3
"""Appends one line per file closed after writing (IN_CLOSE_WRITE) in DIR (not recursive):
    inotify_count.py DIR OUT
Stratus writes every block it GETs from the object store into its disk cache directory
(<data.dir>/cache, one file per GET, see src/cache.rs), so the number of lines is the
number of object GETs while the disk cache is enabled. Stops on SIGTERM.
"""
import ctypes
import os
import select
import signal
import struct
import sys
import time

IN_CLOSE_WRITE = 0x00000008
IN_Q_OVERFLOW = 0x00004000


def main():
    path, out = sys.argv[1], sys.argv[2]
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        sys.exit(f"inotify_init1: errno {ctypes.get_errno()}")
    if libc.inotify_add_watch(fd, path.encode(), IN_CLOSE_WRITE) < 0:
        sys.exit(f"inotify_add_watch {path}: errno {ctypes.get_errno()}")
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    with open(out, "a", buffering=1) as f:
        f.write(f"# watching {path} since {time.time():.3f}\n")
        while not stop:
            try:
                r, _, _ = select.select([fd], [], [], 0.5)
            except InterruptedError:
                continue
            if not r:
                continue
            try:
                buf = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            i = 0
            lines = []
            while i + 16 <= len(buf):
                _wd, mask, _cookie, n = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16:i + 16 + n].split(b"\0", 1)[0].decode(errors="replace")
                i += 16 + n
                if mask & IN_Q_OVERFLOW:
                    lines.append("# OVERFLOW (events lost)\n")
                elif mask & IN_CLOSE_WRITE:
                    lines.append(name + "\n")
            f.write("".join(lines))


if __name__ == "__main__":
    main()
