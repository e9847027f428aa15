#!/usr/bin/env bash
# loadtest/writer-waits.sh SERVER DATA_PARENT [SERVER_FLAGS...]: where a
# batch waits at 2,000 msg/s (BENCHMARKS.md, "The writer's wake-up").
# Starts SERVER on a fresh directory under DATA_PARENT, runs vato-load's
# messaging scenario (200 users, MSG_RATE (10) msg/s each: 2,000 msg/s) for RUN_TIME (60s), and
#  * scrapes /metrics every 250 ms: per quarter second, how many of each
#    over 2.5, 5, 25 and 100 ms: acknowledgements, and their parts (the wait for the
#    writer, the group commit's decide and apply, its WAL write + fdatasync,
#    the task's wake-up after it), and the fan-out;
#  * records 8 s of `perf sched` from 15 s in: the writer thread's
#    scheduling delays (woken to running), p99, p99.9, max.
# Needs perf, and target/release/vato-load. Prints the scrape's slow
# quarters, the snapshots the server logged, and the delays.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVER=$1 PARENT=$2
shift 2
RUN_TIME=${RUN_TIME:-60s}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port) METRICS=$(free_port)
# Our own files (perf's tens of MB above all) on tmpfs: written into the
# page cache of the log's disk, the kernel writes them back ~30 s later in
# one burst, and the WAL's fdatasyncs wait 50-200 ms behind it.
WORK=$(mktemp -d "${TMPFS_DIR:-/dev/shm}/vato-waits.XXXXXX")
DATA=$(mktemp -d "$PARENT/vato-waits.XXXXXX")
"$SERVER" --dev --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$METRICS" \
  --data-dir "$DATA/data" --register-rate 0 --user-msg-rate 0 --user-bytes-rate 0 "$@" \
  >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$WORK/server.log" && break; sleep 0.1; done
python3 - "http://127.0.0.1:$METRICS/metrics" "$WORK/scrape.txt" 600 <<'PY' &
import re, sys, time, urllib.request
url, out, duration = sys.argv[1], open(sys.argv[2], "w"), float(sys.argv[3])
NAMES = ("vato_ack_latency_seconds", "vato_command_queue_seconds",
         "vato_group_commit_apply_seconds", "vato_group_commit_sync_seconds",
         "vato_ack_wake_seconds", "vato_fan_out_latency_seconds")
SHORT = ("acks", "queue", "apply", "syncs", "wake", "fanout")
def read():
    text = urllib.request.urlopen(url, timeout=2).read().decode()
    pattern = r'^(%s)_bucket\{le="([^"]+)"\} (\S+)' % "|".join(NAMES)
    return {(m[1], m[2]): float(m[3]) for m in re.finditer(pattern, text, re.M)}
before, start = read(), time.time()
while time.time() - start < duration:
    time.sleep(0.25)
    try:
        now = read()
    except OSError:
        continue
    parts = []
    for name, short in zip(NAMES, SHORT):
        d = lambda le: now.get((name, le), 0) - before.get((name, le), 0)
        total = d("+Inf")
        over = " ".join(f">{ms}ms={total - d(le):.0f}" for ms, le in (("2.5", "0.0025"), ("5", "0.005"), ("25", "0.025"), ("100", "0.1")))
        parts.append(f"{short}={total:.0f} {over}")
    out.write(time.strftime("%H:%M:%S ", time.gmtime()) + " ".join(parts) + "\n")
    out.flush()
    before = now
PY
SCRAPER=$!
( sleep 15; perf sched record -a -o "$WORK/sched.data" -- sleep 8 >/dev/null 2>&1 ) &
PERF=$!
"$ROOT/target/release/vato-load" --host "http://127.0.0.1:$PORT" --scenarios messaging \
  --users 200 --hatch-rate 200 --run-time "$RUN_TIME" --msg-rate "${MSG_RATE:-10}" --no-print-metrics -q \
  >"$WORK/load.out" 2>&1 || true
wait "$PERF"
kill "$SCRAPER" 2>/dev/null || true
grep -E "delivered=|detail" "$WORK/load.out" || true
echo "quarters with an acknowledgement over 5 ms:"
grep -E "acks=[0-9]+ >2.5ms=[0-9]+ >5ms=[1-9]" "$WORK/scrape.txt" || true
grep -E "snapshot (taken|written)" "$WORK/server.log" | cut -c1-200 || true
perf sched timehist -i "$WORK/sched.data" 2>/dev/null | grep "vato-log-writer" |
  awk '{ d = $6 + 0; n++; if (d > 1) over++; all[n] = d }
       END { asort(all); printf "writer wake-ups=%d scheduling delay >1ms=%d p99=%.3f p99.9=%.3f max=%.3f ms\n",
             n, over, all[int(n * 0.99)], all[int(n * 0.999)], all[n] }'
echo "files in $WORK"
