#!/usr/bin/env python3
"""loadtest/upload-bench.py HOST SECONDS MODE: big attachments beside the
chat load (BENCHMARKS.md, "Big files a megabyte at a time").

Against a server started with --demo: every 2 s, lalo sends kalu a message
with one 25 MiB file of fresh random bytes. MODE `keep`: each is a new
message, its file stored. MODE `retry`: every send has the same client_id,
so after the first each is a retry, answered 200 with the original, and its
file is written and then removed. Prints one line per send (its status and
time); `loadtest/upload-bench.sh` runs it beside `vato-load`.
"""
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

host, seconds, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
assert mode in ("keep", "retry"), mode


def call(method, path, body=None, token=None, ctype="application/json"):
    req = urllib.request.Request(host + path, data=body, method=method)
    req.add_header("Content-Type", ctype)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def login(username, password):
    _, body = call("POST", "/api/auth/login/",
                   json.dumps({"username": username, "password": password}).encode())
    answer = json.loads(body)
    return answer["access"], answer["user"]["id"]


lalo, _ = login("lalo", "lalo123")
_, kalu_id = login("kalu", "kalu123")
_, body = call("POST", "/api/chat/conversations/create-direct/",
               json.dumps({"user_id": kalu_id}).encode(), lalo)
conv = json.loads(body)["id"]
end = time.time() + seconds
time.sleep(3)
n = 0
while time.time() < end:
    started = time.time()
    boundary = uuid.uuid4().hex
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="content"\r\n\r\nbig {n}\r\n'
    if mode == "retry":
        head += (f'--{boundary}\r\nContent-Disposition: form-data; name="client_id"'
                 '\r\n\r\nsame-every-time\r\n')
    head += (f'--{boundary}\r\nContent-Disposition: form-data; name="uploaded_files"; '
             f'filename="f{n}.bin"\r\nContent-Type: application/octet-stream\r\n\r\n')
    body = head.encode() + os.urandom(25 << 20) + f"\r\n--{boundary}--\r\n".encode()
    status, _ = call("POST", f"/api/chat/conversations/{conv}/messages/", body, lalo,
                     "multipart/form-data; boundary=" + boundary)
    n += 1
    print("upload", n, status, "%.0f ms" % (1000 * (time.time() - started)), flush=True)
    time.sleep(max(0.0, 2 - (time.time() - started)))
