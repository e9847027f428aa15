"""The floor under the acknowledgement on a device: a perfect server.

    python3 loadtest/wal-floor.py DIR RATE [SECONDS]

Messages fall due on an open-loop schedule, RATE a second, as vato-load
sends them. A single writer does what the log's group commit does to its
device and nothing else: it takes every message due so far as one batch,
writes one 4 KiB block with O_DIRECT in place into a preallocated file
and `fdatasync`s it, and counts each message's latency from the moment it
was due to the end of that `fdatasync`; then it takes the next batch, or
sleeps until the next message is due. No decoding, no state, no network,
no other thread: what is left is the device's own time, and the time a
message waits for the sync before its own (a sync of 5 ms holds every
message that falls due during it).

Prints one line: the rate held, the syncs per second, their p99, and the
messages' p50 / p99 / p99.9 / max. Beside a disk run of
`loadtest/bench.sh disk RATE` it is the distance to the physical limit:
the server on disk cannot beat this line's p99 on that sitting's device.
"""
import mmap
import os
import sys
import time


def main():
    directory, rate = sys.argv[1], float(sys.argv[2])
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
    path = os.path.join(directory, "vato-wal-floor.tmp")
    size = 16 << 20
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b"\0" * size)
        os.fsync(fd)
        os.close(fd)
        try:
            fd = os.open(path, os.O_RDWR | os.O_DIRECT)
        except OSError:  # tmpfs on older kernels: buffered, as the WAL falls back
            fd = os.open(path, os.O_RDWR)
        block = mmap.mmap(-1, 4096)
        block.write(b"w" * 4096)
        latencies, syncs = [], []
        interval = 1.0 / rate
        start = time.perf_counter() + 0.1
        taken = 0  # messages taken into a batch so far
        pos = 0
        total = int(seconds * rate)
        while taken < total:
            now = time.perf_counter()
            due = min(total, int((now - start) / interval) + 1) if now >= start else 0
            if due <= taken:
                time.sleep(max(0.0, start + taken * interval - now))
                continue
            t = time.perf_counter()
            os.pwrite(fd, block, pos)
            os.fdatasync(fd)
            done = time.perf_counter()
            syncs.append(done - t)
            latencies.extend(done - (start + i * interval) for i in range(taken, due))
            taken = due
            # In place within a segment's first megabyte, as the WAL's
            # records fill a block and move on.
            pos = (pos + 4096) % (1 << 20)
    finally:
        os.close(fd)
        os.unlink(path)
    latencies.sort()
    syncs.sort()

    def q(values, p):
        return values[min(len(values) - 1, int(p * len(values)))] * 1000

    print(
        f"floor dir={directory} rate={rate:.0f} msg/s seconds={seconds:.0f} "
        f"syncs_per_s={len(syncs) / seconds:.0f} sync_p99={q(syncs, 0.99):.2f}ms "
        f"p50={q(latencies, 0.5):.2f}ms p99={q(latencies, 0.99):.2f}ms "
        f"p99.9={q(latencies, 0.999):.2f}ms max={latencies[-1] * 1000:.2f}ms"
    )


if __name__ == "__main__":
    main()
