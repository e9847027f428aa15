"""A thread doing what the log's group commit does to its device, for
loadtest/bigfile-probe.py and loadtest/step-probe.py: a 4 KiB O_DIRECT
write and an fdatasync, every `interval` seconds, each one's start and
duration kept; and the write-back every paced piece is followed by."""
import ctypes
import mmap
import os
import threading
import time

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
_WAIT_WRITE_WAIT = 1 | 2 | 4


def written_back(fd, at, length):
    """sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER) of the range, as
    vato_eventlog::paced does after each piece."""
    _libc.sync_file_range(fd, at, length, _WAIT_WRITE_WAIT)


class CommitProbe:
    def __init__(self, directory, interval):
        self.path = os.path.join(directory, "probe.tmp")
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o600)
        self.block = mmap.mmap(-1, 4096)
        self.block.write(b"p" * 4096)
        self.interval = interval
        self.commits = []
        self.stopped = False
        self.commit()
        self.commits.clear()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def commit(self):
        t = time.perf_counter()
        os.pwrite(self.fd, self.block, 0)
        os.fdatasync(self.fd)
        self.commits.append((t, time.perf_counter() - t))

    def run(self):
        while not self.stopped:
            self.commit()
            time.sleep(self.interval)

    def between(self, t0, t1):
        """The durations of the commits started from t0 to t1, sorted."""
        return sorted(c for (t, c) in self.commits if t0 <= t <= t1)

    def stop(self):
        self.stopped = True
        self.thread.join()
        os.close(self.fd)
        os.unlink(self.path)
