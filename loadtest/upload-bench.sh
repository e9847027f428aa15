#!/usr/bin/env bash
# loadtest/upload-bench.sh SERVER MODE [DATA_PARENT]: one run of 2,000 msg/s
# (vato-load, 200 users, 30 s) with a 25 MiB attachment sent every 2 s
# beside it (loadtest/upload-bench.py, MODE keep or retry), on a fresh data
# directory under DATA_PARENT (default /tmp; put it on the disk to measure
# the disk). Prints the sends' statuses and vato-load's delivery figures.
# Alternate two builds' SERVERs for an A/B (BENCHMARKS.md, "Big files a
# megabyte at a time"). Assumes `cargo build --release -p vato-load`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVER=$1 MODE=$2 PARENT=${3:-/tmp}
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DATA=$(mktemp -d "$PARENT/upload-bench.XXXXXX")
LOG=$(mktemp) SENDS=$(mktemp) LOAD=$(mktemp)
"$SERVER" --dev --demo --register-rate 0 --user-msg-rate 0 --user-bytes-rate 0 \
  --listen "127.0.0.1:$PORT" --data-dir "$DATA" >"$LOG" 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null; wait $SERVER_PID 2>/dev/null; rm -rf "$DATA" "$LOG" "$SENDS" "$LOAD"' EXIT
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
"$ROOT/loadtest/upload-bench.py" "http://127.0.0.1:$PORT" 45 "$MODE" >"$SENDS" 2>&1 &
UPLOADER=$!
"$ROOT/target/release/vato-load" --host "http://127.0.0.1:$PORT" --scenarios messaging \
  --users 200 --hatch-rate 25 --run-time 30s --msg-rate 10 --no-print-metrics -q >"$LOAD" 2>&1 || true
kill $UPLOADER 2>/dev/null || true
wait $UPLOADER 2>/dev/null || true
echo "sends: $(awk '/^upload/ {print $3}' "$SENDS" | sort | uniq -c | tr -s ' \n' ' ')|" \
  "$(grep -o 'p99.9=[0-9.]* ms max=[0-9.]* ms' "$LOAD")" \
  "$(grep -o 'lost=.*p99=[0-9.]* ms' "$LOAD" | tail -1)"
