#!/usr/bin/env bash
# loadtest/rss-idle.sh SERVER DATA_DIR: starts SERVER on DATA_DIR (a
# directory made by `vato-admin generate`), waits for its listening line
# and 8 s more, prints its VmRSS and stops it. No socket is opened.
set -euo pipefail
BIN=$1 DIR=$2
LOG=$(mktemp)
"$BIN" --dev --data-dir "$DIR" --listen 127.0.0.1:0 >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -f "$LOG"' EXIT
for _ in $(seq 1800); do grep -q "listening on" "$LOG" && break; sleep 0.1; done
sleep 8
grep VmRSS "/proc/$PID/status" | tr -s ' \t' ' '
