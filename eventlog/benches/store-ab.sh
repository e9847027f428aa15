#!/usr/bin/env bash
# Store-level A/B, alternated in one sitting: two builds of vato-log-bench
# (e.g. before and after a change), paced open loop, on disk and on tmpfs,
# three times each, with the device baseline before each round.
#
#   eventlog/benches/store-ab.sh OLD_BENCH NEW_BENCH RATE [RATE...]
#
# OLD_BENCH/NEW_BENCH: target/release/deps/vato_log_bench-* of each build
# (`cargo build --release -p vato-eventlog --bench vato-log-bench`).
# DISK_DIR (default target/store-ab) and TMPFS_DIR (/dev/shm/store-ab) pick
# where the stores live. Prints one line per run: the bench's table row
# (achieved/s | p50 | p99 | p99.9 | max | events per fsync).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OLD="${1:?old bench binary}"; NEW="${2:?new bench binary}"; shift 2
DISK="${DISK_DIR:-$ROOT/target/store-ab}"; TMP="${TMPFS_DIR:-/dev/shm/store-ab}"
mkdir -p "$DISK" "$TMP"
for rate in "$@"; do
  for i in 1 2 3; do
    OUT="$ROOT/target/vato-bench" DATA_PARENT="$DISK" "$ROOT/loadtest/bench.sh" device 4096
    for d in "$DISK" "$TMP"; do
      for v in OLD NEW; do
        line=$("${!v}" --only paced --rate "$rate" --paced-seconds 8 --dir "$d" 2>&1 | grep -E '^\| [0-9]')
        echo "rate=$rate run=$i dir=$d $v $line"
      done
    done
  done
done
