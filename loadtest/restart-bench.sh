#!/usr/bin/env bash
# loadtest/restart-bench.sh DATA_DIR SECONDS [KILL|TERM]: how long a
# restart takes after traffic. Starts $BIN/vato-server (BIN defaults to
# target/release; vato-load is taken from there too) on
# DATA_DIR (a directory of `vato-admin generate`, or any), runs vato-load's
# messaging scenario at 2,000 msg/s (200 users, 10 msg/s each) for SECONDS,
# stops the server with SIGKILL (default) or SIGTERM, starts it again and
# prints the seconds until its listening line.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$ROOT/target/release}"
DIR=$1 SECONDS_OF_LOAD=$2 SIGNAL=${3:-KILL}
LOG=$(mktemp)
listening() {
  for _ in $(seq 6000); do grep -q "listening on" "$LOG" && return; sleep 0.05; done
  echo "no listening line; the server said:" >&2; tail -5 "$LOG" >&2; exit 1
}
"$BIN/vato-server" --dev --data-dir "$DIR" --listen 127.0.0.1:0 \
  --register-rate 0 --user-msg-rate 0 --user-bytes-rate 0 >"$LOG" 2>&1 &
PID=$!
listening
HOST=$(grep -o "listening on http://[^ ]*" "$LOG" | head -1 | sed "s/listening on //")
"$BIN/vato-load" --host "$HOST" --scenarios messaging --users 200 --hatch-rate 50 \
  --run-time "${SECONDS_OF_LOAD}s" --msg-rate 10 2>&1 | grep -o "delivered=[0-9]* lost=[0-9]*" | tail -1
echo "snapshots=$(grep -c 'snapshot written' "$LOG" || true)"
echo "sled page-table snapshots (ms): $(grep -o 'page_table_ms=[0-9]*' "$LOG" | cut -d= -f2 | tr '\n' ' ')"
kill "-$SIGNAL" "$PID"
wait "$PID" 2>/dev/null || true
: >"$LOG"
START=$(date +%s.%N)
"$BIN/vato-server" --dev --data-dir "$DIR" --listen 127.0.0.1:0 >"$LOG" 2>&1 &
PID=$!
listening
echo "ready after SIG$SIGNAL: $(echo "$(date +%s.%N) - $START" | bc) s"
kill "$PID"
wait "$PID" 2>/dev/null || true
rm -f "$LOG"
