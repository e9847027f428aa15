#!/usr/bin/env bash
# loadtest/list-bench.sh SERVER DATA_DIR [CALLS] [perf]: the conversation
# list of gen0 (a directory made by `vato-admin generate`, password
# generated-pw) timed by curl: starts SERVER on DATA_DIR, makes 20 calls
# to warm up, then CALLS (200) timed ones, and prints their p50 and p99
# (`time_total`). With `perf` as the fourth argument the timed calls run
# under `perf record -g` (written to /tmp/perf.data).
set -euo pipefail
BIN=$1 DIR=$2 N=${3:-200}
LOG=$(mktemp)
TIMES=$(mktemp)
"$BIN" --dev --data-dir "$DIR" --listen 127.0.0.1:0 \
  --login-fail-rate 0 --login-user-fail-rate 0 >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -f "$LOG" "$TIMES"' EXIT
for _ in $(seq 300); do grep -q "listening on" "$LOG" && break; sleep 0.1; done
HOST=$(grep -o "listening on http://[^ ]*" "$LOG" | head -1 | sed "s/listening on //")
sleep 2
TOKEN=$(curl -s -X POST -H 'Content-Type: application/json' \
  -d '{"username":"gen0","password":"generated-pw"}' "$HOST/api/auth/login/" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access"])')
list() { curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $TOKEN" "$HOST/api/chat/conversations/"; }
for _ in $(seq 20); do list >/dev/null; done
if [ "${4:-}" = perf ]; then
  perf record -F 2000 -g -o /tmp/perf.data -p "$PID" 2>/dev/null &
  PERF=$!
  sleep 1
fi
for _ in $(seq "$N"); do list; done >"$TIMES"
if [ "${4:-}" = perf ]; then kill -INT "$PERF"; wait "$PERF" || true; fi
sort -n "$TIMES" | awk '{a[NR]=$1} END {printf "list p50 %.2f ms p99 %.2f ms (%d calls)\n", a[int(NR*0.5)+1]*1000, a[int(NR*0.99)+1]*1000, NR}'
