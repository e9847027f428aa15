#!/usr/bin/env python3
"""loadtest/step-probe.py DIR [MiB] [ROUNDS]: what the piece size and the
pause of a paced write do to the log's commits on DIR's device
(BENCHMARKS.md, "A quarter megabyte and a pause").

A probe thread does what a group commit does, a 4 KiB O_DIRECT write and an
fdatasync, every 0.3 ms, while the main thread writes a file of MiB (16)
MiB piece by piece, each piece sync_file_range'd (WRITE and WAIT), with the
piece sizes and pauses below (and, as a baseline, nothing), alternated for
ROUNDS (3) rounds. Prints, per way and round, how long the file took and
the probe's commits meanwhile: their count, p50, p90, p99, max, and how
many took over 1 ms.
"""

import os
import sys
import time

from commitprobe import CommitProbe, written_back

d = sys.argv[1]
size = (int(sys.argv[2]) if len(sys.argv) > 2 else 16) << 20
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
# (name, piece bytes, pause after each piece in seconds); a piece of 0: no file
WAYS = [
    ("1M", 1 << 20, 0),
    ("1M+4ms", 1 << 20, 0.004),
    ("256K", 256 << 10, 0),
    ("256K+1ms", 256 << 10, 0.001),
    ("64K+0.25ms", 64 << 10, 0.00025),
    ("none", 0, 0),
]
victim = os.path.join(d, "victim.tmp")


def write(step, pause):
    v = os.open(victim, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    piece = b"\0" * step
    for at in range(0, size, step):
        os.pwrite(v, piece, at)
        written_back(v, at, step)
        if pause:
            time.sleep(pause)
    os.fsync(v)
    os.close(v)


def free():
    # a megabyte at a time, a millisecond apart (vato_eventlog::paced::remove)
    v = os.open(victim, os.O_RDWR)
    n = os.fstat(v).st_size
    while n > 1 << 20:
        n -= 1 << 20
        os.ftruncate(v, n)
        time.sleep(0.001)
    os.close(v)
    os.unlink(victim)


probe = CommitProbe(d, 0.0003)
try:
    for r in range(rounds):
        for name, step, pause in WAYS:
            time.sleep(0.3)
            t0 = time.perf_counter()
            if step:
                write(step, pause)
            else:
                time.sleep(0.1)
            t1 = time.perf_counter()
            time.sleep(0.02)
            seen = probe.between(t0, t1 + 0.02)
            n = len(seen)
            ms = lambda q: 1000 * seen[min(n - 1, int(n * q))]
            print(f"{name:11} round {r + 1}: took {1000 * (t1 - t0):6.1f} ms, commits {n}, "
                  f"p50 {ms(0.5):.2f} p90 {ms(0.9):.2f} p99 {ms(0.99):.2f} max {1000 * seen[-1]:.2f} ms, "
                  f"over 1 ms {sum(c > 0.001 for c in seen)}", flush=True)
            if step:
                free()
finally:
    probe.stop()
