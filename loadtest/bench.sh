#!/usr/bin/env bash
# loadtest/bench.sh: the full vato-load benchmark (see BENCHMARKS-load.md).
#
#   loadtest/bench.sh sweep [RATES...]   delivery rate sweep (msg/s), 1 run each
#   loadtest/bench.sh rate RATE [RUNS]   RUNS (3) runs at RATE msg/s
#   loadtest/bench.sh idle [SOCKETS]     idle authenticated sockets on one node
#   loadtest/bench.sh disk RATE [RUNS]   RUNS (3) pairs of runs at RATE, the data
#                                        directory on tmpfs and on disk, alternated
#   loadtest/bench.sh cold RATE [RUNS]   RUNS (3) times: a fresh server, the first
#                                        COLD_TIME (15s) of load, then as long again
#                                        on the same, now warm, server (with
#                                        OLD_SERVER set: that one's, alternated)
#   loadtest/bench.sh ab RATE [RUNS]     RUNS (3) times: OLD_SERVER (another build's
#                                        vato-server, OLD_FLAGS its flags) and this
#                                        one, each on tmpfs and on disk, alternated
#   loadtest/bench.sh device [BYTES]     the disk alone: BYTES (4096) written in
#                                        place + fdatasync, per second and p99
#   loadtest/bench.sh floor RATE         a perfect server on the disk alone
#                                        (loadtest/wal-floor.py, FLOOR_TIME 10 s):
#                                        the ack p99 no server can beat there;
#                                        `disk` and `ab` run it before each disk run
#
# Every run starts a fresh `vato-server --dev` on a free port with a fresh data
# directory under DATA_PARENT (default: $TMPDIR or /tmp), and stops it
# afterwards. With SEED_DIR set, that fresh directory starts as a copy of
# SEED_DIR (one made by `vato-admin generate`: a server that already holds
# 20,000 users and their history). `ab` runs on tmpfs and on disk, or only
# on the one AB_MEDIA names (tmpfs or disk). `disk` puts it under TMPFS_DIR (/dev/shm) and DISK_DIR
# ($OUT/data, on the disk the repository is on) in turn. Messaging runs use only the messaging
# scenario: USERS (200) users in USERS/2 pairs, each sending RATE/USERS msg/s on
# an open-loop schedule for RUN_TIME (30s) once all are connected, judged by
# loadtest/thresholds.json (p99 delivery <= 50 ms, no error, no loss, no
# duplicate, no out-of-order). Summary lines are appended to $OUT/bench.txt;
# beside the client's figures a run's line gives the machine's CPU by
# process, the server's peak RSS, each snapshot's CPU and wall time
# (snapshot_cpu_ms=, snapshot_ms=), what the device under the data
# directory wrote during the run (device_write_mb=, from its
# /sys/dev/block/MAJ:MIN/stat: every process's writes, none on tmpfs), and
# the kernel's count of what the server wrote (server_write_mb=, 0 on tmpfs)
# and of it what its threads that exited during the run wrote
# (exited_threads_write_mb=: the snapshot threads). The last two are
# `write_bytes` of /proc/PID/io, counted when a page is dirtied: a write
# into a page the cache holds in a large folio (a file copied whole, as
# SEED_DIR's) counts the whole folio, so with SEED_DIR they can be several
# times what reached the device (BENCHMARKS.md, "What a snapshot writes").
# Each run's server log is kept as $OUT/TAG.server.log.
#
# SERVER and LOAD name other builds' vato-server and vato-load (an A/B of the
# client: `LOAD=PATH`).
#
# Assumes `cargo build --release -p vato-server -p vato-load`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/target/release"
USERS="${USERS:-200}"
RUN_TIME="${RUN_TIME:-30s}"
HATCH_RATE="${HATCH_RATE:-25}"
OUT="${OUT:-$ROOT/target/vato-bench}"
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

SERVER_PID=""
DATA=""
stop_server() {
  if [[ -n "$SERVER_PID" ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
  if [[ -n "$DATA" ]]; then
    rm -rf "$DATA"
    DATA=""
  fi
}
trap stop_server EXIT

start_server() {
  PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  local parent="${DATA_PARENT:-${TMPDIR:-/tmp}}"
  mkdir -p "$parent"
  DATA="$(mktemp -d "$parent/vato-bench-data.XXXXXX")"
  if [[ -n "${SEED_DIR:-}" ]]; then
    cp -a "$SEED_DIR/." "$DATA/"
    # The copy's hundreds of MB of dirty pages, written back now rather
    # than by the kernel during the run, under the log's fdatasyncs.
    sync
  fi
  # Benchmarks measure throughput: every load user registers from this host
  # and the per-user rates (issue 17) are off.
  # shellcheck disable=SC2086 # SERVER_FLAGS is a list of flags
  "${SERVER:-$BIN/vato-server}" --dev ${SERVER_FLAGS---register-rate 0 --user-msg-rate 0 --user-bytes-rate 0} \
    --listen "127.0.0.1:$PORT" --data-dir "$DATA" >"$OUT/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "bench: server did not start" >&2
  tail -n 20 "$OUT/server.log" >&2
  return 1
}

# idle_pct: the machine's idle CPU % over 3 s (other work skews the numbers).
idle_pct() {
  local a b
  a=($(head -1 /proc/stat)); sleep 3; b=($(head -1 /proc/stat))
  local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) )) total=0 i
  for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
  echo $(( 100 * idle / (total > 0 ? total : 1) ))
}

# wait_quiet: waits (up to QUIET_WAIT s, 600) for the machine to be >= QUIET_IDLE %
# idle (90) before a run; prints the idle % seen.
wait_quiet() {
  local deadline=$(( $(date +%s) + ${QUIET_WAIT:-600} )) p
  while :; do
    p="$(idle_pct)"
    if (( p >= ${QUIET_IDLE:-90} )) || (( $(date +%s) >= deadline )); then
      echo "$p"
      return 0
    fi
  done
}

# one_rate TOTAL TAG: one messaging run at TOTAL msg/s on a fresh server;
# prints the summary line, with the CPU the run's own processes used and the
# CPU anything else used (other work on the machine skews the numbers:
# foreign_cpu should be ~0).
one_rate() {
  local quiet
  quiet="$(wait_quiet)"
  start_server
  one_load "$1" "$2" "$quiet"
  stop_server
}

# one_load TOTAL TAG QUIET: one messaging run against the running server.
one_load() {
  local total="$1" tag="$2" quiet="$3" per rc=0
  per="$(python3 -c "print($total / $USERS)")"
  # The server's log so far: the snapshots of this run are the ones after.
  local logged
  logged="$(wc -l <"$OUT/server.log")"
  local a b io_before io_after exited_before exited_after device_before device_after
  a=($(head -1 /proc/stat))
  device_before="$(device_written_bytes)"
  io_before="$(written_bytes)"
  exited_before="$(written_by_exited_threads)"
  local TIMEFORMAT='%U %S'
  { time "${LOAD:-$BIN/vato-load}" --host "http://127.0.0.1:$PORT" --scenarios messaging \
    --users "$USERS" --hatch-rate "$HATCH_RATE" --run-time "$RUN_TIME" --msg-rate "$per" \
    --report-file "$OUT/$tag.html" --report-file "$OUT/$tag.json" \
    --no-print-metrics -q >"$OUT/$tag.out" 2>&1 ; } 2>"$OUT/$tag.time" || rc=$?
  b=($(head -1 /proc/stat))
  device_after="$(device_written_bytes)"
  io_after="$(written_bytes)"
  exited_after="$(written_by_exited_threads)"
  local mem st
  mem="$(grep -E '^VmHWM' "/proc/$SERVER_PID/status" | tr -s ' \t' ' ')"
  st=($(sed 's/.*) //' "/proc/$SERVER_PID/stat"))
  local hz ticks=0 idle i cpu
  hz="$(getconf CLK_TCK)"
  for i in 1 2 3 4 5 6 7 8; do ticks=$(( ticks + b[i] - a[i] )); done
  idle=$(( b[4] + b[5] - a[4] - a[5] ))
  # Steal: time the hypervisor gave our vCPUs to someone else (field 8 of
  # the cpu line). On a shared host it can reach a quarter of the run and
  # then dominates every tail; it is in no process's CPU.
  local steal=$(( b[8] - a[8] ))
  # Fields 14 and 15 of /proc/PID/stat (utime, stime) are 12 and 13 after "comm".
  cpu="$(python3 -c "
c=open('$OUT/$tag.time').read().split()
client=(float(c[-2])+float(c[-1]))*$hz
server=${st[11]}+${st[12]}
busy=$ticks-$idle-$steal
print(f'client_cpu={100*client/$ticks:.0f}% server_cpu={100*server/$ticks:.0f}% foreign_cpu={100*max(0,busy-client-server)/$ticks:.0f}% steal={100*$steal/$ticks:.0f}%')
")"
  # The CPU and the wall time of each snapshot the server wrote during the
  # run ("none" from a build without them).
  local snaps walls
  snaps="$(snapshot_field "$logged" cpu_ms)"
  walls="$(snapshot_field "$logged" total_ms)"
  # What the device under the data directory wrote during the run, in MB;
  # the kernel's count of what the server wrote (`write_bytes` of
  # /proc/PID/io: 0 on tmpfs; a large folio counts whole, the header above)
  # and of it what threads that have exited wrote (the snapshot threads: one
  # per snapshot, gone when it is written; the others are alive).
  local device_written written exited
  device_written="$(( (device_after - device_before) / 1000000 ))"
  written="$(( (io_after - io_before) / 1000000 ))"
  exited="$(( (exited_after - exited_before) / 1000000 ))"
  cp "$OUT/server.log" "$OUT/$tag.server.log"
  local line
  line="$(grep -E '^vato-load: delivered=' "$OUT/$tag.out" || echo "vato-load: no summary (exit $rc)")"
  echo "${LABEL:+$LABEL }target=$total msg/s users=$USERS per_user=$per data=${DATA_PARENT:-${TMPDIR:-/tmp}} idle_before=$quiet% $cpu exit=$rc server $mem snapshot_cpu_ms=${snaps:-none} snapshot_ms=${walls:-none} device_write_mb=$device_written server_write_mb=$written exited_threads_write_mb=$exited | $line" | tee -a "$OUT/bench.txt"
}

# snapshot_field LINES FIELD: FIELD of each `snapshot written` line of the
# server's log after its first LINES lines, as a/b/c.
snapshot_field() {
  tail -n "+$(($1 + 1))" "$OUT/server.log" | grep 'snapshot written' |
    grep -oE " $2=[0-9]+" | cut -d= -f2 | paste -sd/ - || true
}

# written_bytes: the bytes the kernel counts as written by the running
# server so far (its pages dirtied, a large folio whole).
written_bytes() {
  grep -E '^write_bytes:' "/proc/$SERVER_PID/io" | cut -d' ' -f2
}

# device_written_bytes: the bytes the block device under the running
# server's data directory has written since the machine booted (sectors
# written, field 7 of its stat, found by the mount's device number: a
# disk, a partition or a device-mapper volume alike), whoever wrote them;
# 0 where there is no such device (tmpfs).
device_written_bytes() {
  local dev stat
  dev="$(findmnt -no MAJ:MIN -T "$DATA" 2>/dev/null | head -1 | tr -d ' ' || true)"
  stat="/sys/dev/block/${dev:-none}/stat"
  if [[ -r "$stat" ]]; then
    awk '{ print $7 * 512 }' "$stat"
  else
    echo 0
  fi
}

# written_by_exited_threads: of written_bytes, what its threads that have
# exited wrote (the process's count keeps theirs; its live threads' are
# listed under task/).
written_by_exited_threads() {
  local total live
  total="$(written_bytes)"
  live="$(cat "/proc/$SERVER_PID"/task/*/io 2>/dev/null | awk '/^write_bytes:/ { s += $2 } END { print s + 0 }')"
  echo $(( total - live ))
}

# device BYTES: the floor under every ack on the disk the data would be on:
# BYTES written in place into a preallocated file + fdatasync, as the WAL does.
device() {
  local bytes="${1:-4096}" dir="${DATA_PARENT:-${TMPDIR:-/tmp}}"
  mkdir -p "$dir"
  python3 - "$dir" "$bytes" <<'PY' | tee -a "$OUT/bench.txt"
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
path = os.path.join(d, "vato-device-probe")
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
size = 64 << 20
os.write(fd, b"\0" * size); os.fsync(fd)
block, lat, pos, t0 = b"\x5a" * n, [], 0, time.perf_counter()
while time.perf_counter() - t0 < 5:
    t = time.perf_counter()
    os.pwrite(fd, block, pos); os.fdatasync(fd)
    lat.append(time.perf_counter() - t)
    pos = (pos + n) % (size - n)
secs = time.perf_counter() - t0
os.close(fd); os.unlink(path)
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
print(f"device dir={d} write={n}B fdatasyncs_per_s={len(lat)/secs:.0f} p50={q(0.5):.2f}ms p99={q(0.99):.2f}ms p999={q(0.999):.2f}ms")
PY
}

# floor RATE: loadtest/wal-floor.py on the disk the data would be on.
floor() {
  local dir="${DATA_PARENT:-${TMPDIR:-/tmp}}"
  mkdir -p "$dir"
  python3 "$ROOT/loadtest/wal-floor.py" "$dir" "$1" "${FLOOR_TIME:-10}" | tee -a "$OUT/bench.txt"
}

case "${1:-}" in
  sweep)
    shift
    rates=("$@")
    [[ ${#rates[@]} -gt 0 ]] || rates=(1000 2000 3000 4000 5000 6000 8000)
    for r in "${rates[@]}"; do one_rate "$r" "sweep-$r"; done
    ;;
  rate)
    r="${2:?rate}"
    runs="${3:-3}"
    for i in $(seq 1 "$runs"); do one_rate "$r" "rate-$r-$i"; done
    ;;
  idle)
    n="${2:-19000}"
    echo "bench: machine idle before: $(wait_quiet)%"
    start_server
    "$BIN/vato-load" --host "http://127.0.0.1:$PORT" --idle-sockets "$n" \
      --server-pid "$SERVER_PID" --source-ips "${SOURCE_IPS:-4}" \
      --open-concurrency "${OPEN_CONCURRENCY:-64}" --idle-hold-s "${HOLD:-10}" \
      2>&1 | tee "$OUT/idle-$n.out" | grep -v 'sockets open'
    grep -E 'sockets=' "$OUT/idle-$n.out" >>"$OUT/bench.txt" || true
    stop_server
    ;;
  disk)
    r="${2:?rate}"
    runs="${3:-3}"
    disk_dir="${DISK_DIR:-$OUT/data}"
    for i in $(seq 1 "$runs"); do
      DATA_PARENT="${TMPFS_DIR:-/dev/shm}" device 4096
      DATA_PARENT="${TMPFS_DIR:-/dev/shm}" one_rate "$r" "tmpfs-$r-$i"
      DATA_PARENT="$disk_dir" device 4096
      DATA_PARENT="$disk_dir" floor "$r"
      DATA_PARENT="$disk_dir" one_rate "$r" "disk-$r-$i"
    done
    ;;
  ab)
    # OLD_SERVER against this build's server, each on tmpfs and on disk,
    # alternated; OLD_FLAGS are the old server's extra flags (default none:
    # a build from before the per-user limits has no such flags).
    r="${2:?rate}"
    runs="${3:-3}"
    disk_dir="${DISK_DIR:-$OUT/data}"
    old="${OLD_SERVER:?OLD_SERVER=path of the other vato-server}"
    case "${AB_MEDIA:-both}" in
      tmpfs) media_list=("${TMPFS_DIR:-/dev/shm}") ;;
      disk) media_list=("$disk_dir") ;;
      *) media_list=("${TMPFS_DIR:-/dev/shm}" "$disk_dir") ;;
    esac
    for i in $(seq 1 "$runs"); do
      DATA_PARENT="$disk_dir" device 4096
      DATA_PARENT="$disk_dir" floor "$r"
      for media in "${media_list[@]}"; do
        DATA_PARENT="$media" SERVER="$old" SERVER_FLAGS="${OLD_FLAGS:-}" LABEL=OLD \
          one_rate "$r" "ab-old-$r-$i"
        DATA_PARENT="$media" LABEL=NEW one_rate "$r" "ab-new-$r-$i"
      done
    done
    ;;
  cold)
    # With OLD_SERVER set, that server's cold start alternates with this one's.
    r="${2:?rate}"
    runs="${3:-3}"
    for i in $(seq 1 "$runs"); do
      device 4096
      for which in ${OLD_SERVER:+OLD} NEW; do
        if [[ "$which" == OLD ]]; then
          export SERVER="$OLD_SERVER" SERVER_FLAGS="${OLD_FLAGS:-}" LABEL=OLD
        else
          unset SERVER SERVER_FLAGS
          export LABEL=${OLD_SERVER:+NEW}
        fi
        quiet="$(wait_quiet)"
        start_server
        LABEL="${LABEL:+$LABEL }cold" RUN_TIME="${COLD_TIME:-15s}" one_load "$r" "cold-$r-$i" "$quiet"
        LABEL="${LABEL:+$LABEL }warm" RUN_TIME="${COLD_TIME:-15s}" one_load "$r" "warm-$r-$i" "$quiet"
        stop_server
      done
      unset SERVER SERVER_FLAGS LABEL
    done
    ;;
  device)
    device "${2:-4096}"
    ;;
  floor)
    floor "${2:?rate}"
    ;;
  *)
    sed -n '2,/^# Assumes/p' "$0"
    exit 2
    ;;
esac
