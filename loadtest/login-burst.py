#!/usr/bin/env python3
"""loadtest/login-burst.py HOST PID N CONCURRENCY: registers one user, then N
logins of it, CONCURRENCY at a time, against the server at HOST whose process
is PID (on this machine: RSS is read from /proc/PID/status); prints its RSS
before, at the peak (sampled every 50 ms), right after and 15 s after.
Python's standard library only. The figure of issue 12 (BENCHMARKS.md):

    target/release/vato-server --dev --register-rate 0 --listen 127.0.0.1:8000 &
    loadtest/login-burst.py http://127.0.0.1:8000 $! 2000 64
"""
import json, sys, threading, time, urllib.request, uuid
host, pid, n, conc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"): return int(line.split()[1]) // 1024
def post(path, body):
    req = urllib.request.Request(host + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r: return r.status
name = "burst" + uuid.uuid4().hex[:8]
pw = "correct-horse-battery-" + uuid.uuid4().hex[:6]
post("/api/auth/register/", {"username": name, "email": name + "@example.com", "password": pw, "password2": pw, "first_name": "B", "last_name": "U"})
time.sleep(1)
before = rss(); peak = before; done = 0; lock = threading.Lock(); errors = 0
def worker(k):
    global done, errors
    for _ in range(k):
        try: post("/api/auth/login/", {"username": name, "password": pw})
        except Exception:
            with lock: errors += 1
        with lock: done += 1
threads = [threading.Thread(target=worker, args=(n // conc + (i < n % conc),)) for i in range(conc)]
t0 = time.time()
for t in threads: t.start()
while any(t.is_alive() for t in threads):
    peak = max(peak, rss()); time.sleep(0.05)
secs = time.time() - t0
after0 = rss(); time.sleep(15); after15 = rss()
print(f"logins={done} errors={errors} secs={secs:.1f} rss_before={before}MiB peak={peak}MiB after={after0}MiB after_15s={after15}MiB")
