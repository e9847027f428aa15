#!/usr/bin/env python3
"""loadtest/history-bench.py SERVER DATA_DIR PASSWORD [--kill9]: the memory,
start-up and read figures of issue 12 for a data directory made by
`vato-admin generate` (users gen0..., gen0 in its first 500 conversations).

It starts SERVER (the vato-server binary) on a copy-free DATA_DIR with
--dev, times until the `vato-server listening on` line, reads the RSS once
the server is idle, then as gen0 measures the conversation list (200 calls)
and a 100-message history page of 300 different conversations, each asked
once (cold: nothing asked of it since the start), and checks the list's
unread counts and last messages against the pages. With --kill9 it first
starts the server, kills it with SIGKILL once listening, and measures the
next start (the recovery path). Python's standard library only:

    target/release/vato-admin --data-dir /tmp/g1m generate --messages 1000000 --password generated-pw
    loadtest/history-bench.py target/release/vato-server /tmp/g1m generated-pw
"""
import json, os, re, signal, statistics, subprocess, sys, time, urllib.request

server, data_dir, password = sys.argv[1], sys.argv[2], sys.argv[3]
kill9 = "--kill9" in sys.argv[4:]


def start():
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [server, "--dev", "--data-dir", data_dir, "--listen", "127.0.0.1:0",
         "--login-fail-rate", "0", "--login-user-fail-rate", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        m = re.search(r"vato-server listening on (http://\S+)", line)
        if m:
            return proc, m.group(1), time.monotonic() - t0
    raise SystemExit(f"the server exited before listening ({proc.wait()})")


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024


def call(host, path, token=None, body=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(host + path, data, headers)
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as r:
        raw = r.read()
    ms = (time.perf_counter() - t0) * 1000
    return json.loads(raw), ms


def p(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


if kill9:
    proc, _, _ = start()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
proc, host, ready_s = start()
try:
    time.sleep(3)
    rss = rss_mib(proc.pid)
    login, _ = call(host, "/api/auth/login/", body={"username": "gen0", "password": password})
    token = login["access"]
    lists = []
    for _ in range(200):
        convs, ms = call(host, "/api/chat/conversations/", token)
        lists.append(ms)
    list_kib = len(json.dumps(convs)) / 1024
    pages, wrong = [], 0
    for conv in convs[:300]:
        page, ms = call(host, f"/api/chat/conversations/{conv['id']}/messages/?limit=100", token)
        pages.append(ms)
        newest = page[0] if page else None
        last = conv.get("last_message")
        if (newest and newest["id"]) != (last and last["id"]):
            wrong += 1
    print(f"start={'kill9' if kill9 else 'clean'} ready_s={ready_s:.2f} rss_mib={rss:.0f} "
          f"conversations={len(convs)} list_p50_ms={statistics.median(lists):.2f} "
          f"list_p99_ms={p(lists, 0.99):.2f} list_kib={list_kib:.0f} history_p50_ms={statistics.median(pages):.2f} "
          f"history_p99_ms={p(pages, 0.99):.2f} pages={len(pages)} last_message_mismatches={wrong}")
finally:
    proc.send_signal(signal.SIGTERM)
    proc.wait()
