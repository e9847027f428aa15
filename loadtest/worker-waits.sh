#!/usr/bin/env bash
# loadtest/worker-waits.sh SERVER DATA_PARENT: where the server's tokio
# workers block (BENCHMARKS.md, "Readers behind a paced commit").
#
# Starts SERVER on a fresh directory under DATA_PARENT, runs vato-load's
# messaging scenario at 200 × MSG_RATE (80) msg/s, 16,000 msg/s, for
# RUN_TIME (25s), and from 12 s in records for 4 s every system call of
# the server that took 5 ms or more, with its stack (`perf trace
# --duration 5 --call-graph fp`). Prints, for the tokio workers, the
# waits grouped by the first frame of ours or of a library (redb's marked),
# their count and total. The stacks need frame pointers:
#   RUSTFLAGS="-C force-frame-pointers=yes" cargo build --release -p vato-server --target-dir /work/target-fp
# Needs perf and target/release/vato-load; its files on TMPFS_DIR (/dev/shm).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVER=$1 PARENT=$2
WORK=$(mktemp -d "${TMPFS_DIR:-/dev/shm}/vato-worker-waits.XXXXXX")
DATA=$(mktemp -d "$PARENT/vato-worker-waits.XXXXXX")
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$SERVER" --dev --listen "127.0.0.1:$PORT" --data-dir "$DATA/data" --register-rate 0 \
  --user-msg-rate 0 --user-bytes-rate 0 >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$WORK/server.log" && break; sleep 0.1; done
( sleep 12; timeout -s INT 4 perf trace -p "$PID" --duration 5 --call-graph fp --max-stack 40 \
    -e futex,pread64,read,pwrite64,write,fsync,fdatasync -o "$WORK/trace.txt" ) &
TRACE=$!
"$ROOT/target/release/vato-load" --host "http://127.0.0.1:$PORT" --scenarios messaging \
  --users 200 --hatch-rate 200 --run-time "${RUN_TIME:-25s}" --msg-rate "${MSG_RATE:-80}" \
  --no-print-metrics -q >"$WORK/load.out" 2>&1 || true
wait "$TRACE" || true
grep -E "delivered=" "$WORK/load.out" || true
python3 - "$WORK/trace.txt" <<'PY'
import re, sys
from collections import defaultdict
calls, current = [], None
for line in open(sys.argv[1]):
    m = re.match(r'^ *([0-9.]+) \( *([0-9.]+) ms\): (\S+?)/(\d+) (\w+)\(', line)
    if m:
        current = [m[3], float(m[2]), []]
        calls.append(current)
    elif current and line.strip():
        current[2].append(line.strip().split(' (')[0])
waits = defaultdict(lambda: [0, 0.0])
for thread, ms, stack in calls:
    if not thread.startswith("tokio"):
        continue
    ours = [f for f in stack[1:] if not f.startswith(("std::", "core::", "<core", "<std", "parking_lot"))][:1]
    key = ("redb: " if any("redb" in f for f in stack) else "") + " < ".join(ours)
    waits[key][0] += 1
    waits[key][1] += ms
print("tokio workers' calls of 5 ms or more, 4 s: count, total, first frame")
for key, (n, ms) in sorted(waits.items(), key=lambda kv: -kv[1][1])[:12]:
    print(f"{n:5d} {ms:8.1f} ms  {key[:160]}")
PY
echo "files in $WORK"
