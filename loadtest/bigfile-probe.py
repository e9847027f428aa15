#!/usr/bin/env python3
"""loadtest/bigfile-probe.py DIR [MiB] [ROUNDS]: what one big file does to
the log's commits on DIR's device (BENCHMARKS.md, "Big files a megabyte at a
time").

A probe thread does what a group commit does, a 4 KiB O_DIRECT write and
an fdatasync, every 0.5 ms, while the main thread handles a file of MiB
(32) MiB in one of four ways, alternated for ROUNDS (3) rounds:
  write-whole  written into a new file and fsynced (as before)
  write-paced  written 1 MiB at a time, each piece sync_file_range'd
               (WRITE and WAIT), then fsynced (vato_eventlog::paced)
  free-whole   removed (unlink)
  free-paced   shrunk 1 MiB at a time, 1 ms apart, then removed
Prints, per way and round, how long the operation took and the probe's
slowest commit from its start to 50 ms after its end.
"""
import os
import sys
import time

from commitprobe import CommitProbe, written_back

d = sys.argv[1]
size = int(sys.argv[2]) << 20 if len(sys.argv) > 2 else 32 << 20
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
STEP = 1 << 20
victim = os.path.join(d, "victim.tmp")


def make_victim():
    # written and synced before the probe looks, freed with care afterwards
    v = os.open(victim, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    piece = b"\1" * STEP
    for at in range(0, size, STEP):
        os.pwrite(v, piece, at)
        written_back(v, at, STEP)
    os.fsync(v)
    os.close(v)


def free_paced():
    v = os.open(victim, os.O_RDWR)
    n = os.fstat(v).st_size
    while n > STEP:
        n -= STEP
        os.ftruncate(v, n)
        time.sleep(0.001)
    os.close(v)
    os.unlink(victim)


def write(paced):
    v = os.open(victim, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    piece = b"\0" * STEP
    for at in range(0, size, STEP):
        os.pwrite(v, piece, at)
        if paced:
            written_back(v, at, STEP)
    os.fsync(v)
    os.close(v)


ways = {
    "write-whole": (None, lambda: write(False)),
    "write-paced": (None, lambda: write(True)),
    "free-whole": (make_victim, lambda: os.unlink(victim)),
    "free-paced": (make_victim, free_paced),
}
if os.path.exists(victim):
    free_paced()
probe = CommitProbe(d, 0.0005)
try:
    for r in range(rounds):
        for name, (prepare, operation) in ways.items():
            if prepare:
                prepare()
            time.sleep(0.3)
            t0 = time.perf_counter()
            operation()
            t1 = time.perf_counter()
            time.sleep(0.05)
            seen = probe.between(t0, t1 + 0.05)
            print(f"{name:12} {size >> 20} MiB round {r + 1}: took {1000 * (t1 - t0):6.1f} ms, "
                  f"slowest commit {1000 * max(seen):5.2f} ms of {len(seen)}", flush=True)
            if name.startswith("write"):
                free_paced()
                time.sleep(0.3)
finally:
    probe.stop()
