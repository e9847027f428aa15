#!/usr/bin/env bash
# loadtest/metrics-timeline.sh RATE DATA_PARENT: when, inside a run, the
# server's own latencies go bad, and what it was doing then (BENCHMARKS.md,
# "A snapshot is the tail at 16,000 msg/s").
#
# Starts a fresh vato-server (SERVER, default target/release/vato-server;
# EXTRA: more flags) on a fresh directory under DATA_PARENT, runs
# vato-load's messaging scenario (200 users, RATE/200 msg/s each, RUN_TIME
# 20s), and reads /metrics every 0.2 s. Prints the load's summary, then
# each 0.2 s slice in which at least 1 % of some histogram's entries
# were slow, as slow/all per histogram: the ack (> 10 ms), the writer's queue (> 5 ms), the
# WAL's write + fdatasync (> 2.5 ms), the fan-out (> 10 ms), the wake of
# the task that reads an answer (> 5 ms: the tokio workers were not
# running), a commit's apply (> 1 ms); then the server's snapshot lines,
# whose times line up with the slices.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RATE=${1:?rate} PARENT=${2:?data parent}
SERVER=${SERVER:-$ROOT/target/release/vato-server}
WORK=$(mktemp -d "${TMPFS_DIR:-/dev/shm}/vato-timeline.XXXXXX")
mkdir -p "$PARENT" "$WORK/scrapes"
DATA=$(mktemp -d "$PARENT/vato-timeline.XXXXXX")
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# shellcheck disable=SC2086 # EXTRA is a list of flags
"$SERVER" --dev --register-rate 0 --user-msg-rate 0 --user-bytes-rate 0 ${EXTRA:-} \
  --listen "127.0.0.1:$PORT" --data-dir "$DATA" >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA" "$WORK"' EXIT
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
"$ROOT/target/release/vato-load" --host "http://127.0.0.1:$PORT" --scenarios messaging --users 200 \
  --hatch-rate 25 --run-time "${RUN_TIME:-20s}" --msg-rate "$(python3 -c "print($RATE / 200)")" \
  --no-print-metrics -q >"$WORK/load.out" 2>&1 &
LOADPID=$!
while kill -0 "$LOADPID" 2>/dev/null; do
  curl -fsS "http://127.0.0.1:$PORT/metrics" >"$WORK/scrapes/$(date +%s.%N)" 2>/dev/null || true
  sleep 0.2
done
wait "$LOADPID" || true
grep -E '^vato-load: delivered=' "$WORK/load.out" || tail -5 "$WORK/load.out"
python3 - "$WORK/scrapes" <<'PY'
import datetime, os, re, sys
folder = sys.argv[1]
# (histogram, bucket bound): what counts as slow in a slice
WATCHED = [
    ("vato_ack_latency_seconds", "0.01", "ack"),
    ("vato_command_queue_seconds", "0.005", "queue"),
    ("vato_group_commit_sync_seconds", "0.0025", "sync"),
    ("vato_fan_out_latency_seconds", "0.01", "fan_out"),
    ("vato_ack_wake_seconds", "0.005", "wake"),
    ("vato_group_commit_apply_seconds", "0.001", "apply"),
]
def buckets(path):
    found = {}
    for line in open(path):
        m = re.match(r'^(\w+)_bucket\{le="([^"]+)"\} (\S+)$', line)
        if m:
            found[(m[1], m[2])] = float(m[3])
    return found
previous = None
for name in sorted(os.listdir(folder), key=float):
    now = buckets(os.path.join(folder, name))
    if previous is not None and now:
        cells, slow_any = [], False
        for metric, bound, label in WATCHED:
            total = now.get((metric, "+Inf"), 0) - previous.get((metric, "+Inf"), 0)
            fast = now.get((metric, bound), 0) - previous.get((metric, bound), 0)
            slow_any |= total > 0 and (total - fast) / total >= 0.01
            cells.append(f"{label}>{float(bound) * 1000:g}ms {total - fast:.0f}/{total:.0f}")
        if slow_any:
            at = datetime.datetime.fromtimestamp(float(name), datetime.timezone.utc)
            print(at.strftime("%H:%M:%S.%f")[:-3], "  ".join(cells))
    if now:
        previous = now
PY
sed -e 's/\x1b\[[0-9;]*m//g' "$WORK/server.log" | grep -E "snapshot (taken|written)" | cut -c1-220 || true
