#!/usr/bin/env bash
# loadtest/sync-trace.sh SERVER DATA_PARENT [SERVER_FLAGS...]: what each
# WAL fdatasync of a run waited for (BENCHMARKS.md, "One commit in six
# writes the inode").
#
# Starts SERVER on a fresh directory under DATA_PARENT, runs vato-load's
# messaging scenario at 200 × MSG_RATE (10) msg/s, 2,000 msg/s, (200 users) for
# RUN_TIME (60s), and records
#  * every I/O system call of the server with its duration (`perf trace`),
#  * every request the block layer issued, by whom (`perf record`);
# then prints the WAL's fdatasyncs (p50 / p99 / p99.9 / max), split into
# those during which the writer thread also wrote a metadata block (the
# file's inode: `WSM` requests) and the rest, and, for each fdatasync of
# SLOW_MS (3) or more, the server's other I/O that started in the 30 ms
# before it and was still running within 5 ms of it; and the share of all
# syncs and of the slow ones during which anyone else (the kernel's
# writeback included) had a write issued to the block layer.
# Needs perf and target/release/vato-load; keeps its files (hundreds of
# MB) on TMPFS_DIR (/dev/shm), never on the disk under test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVER=$1 PARENT=$2
shift 2
RUN_TIME=${RUN_TIME:-60s}
WORK=$(mktemp -d "${TMPFS_DIR:-/dev/shm}/vato-sync-trace.XXXXXX")
DATA=$(mktemp -d "$PARENT/vato-sync-trace.XXXXXX")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
"$SERVER" --dev --listen "127.0.0.1:$PORT" --data-dir "$DATA/data" --register-rate 0 \
  --user-msg-rate 0 --user-bytes-rate 0 "$@" >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$WORK/server.log" && break; sleep 0.1; done
perf trace -p "$PID" -T -o "$WORK/trace.txt" \
  -e 'fdatasync,fsync,sync_file_range,pwrite64,pwritev,pwritev2,write,ftruncate,fallocate,unlink,rename,renameat2' &
TRACE=$!
perf record -q -e block:block_rq_issue -a -o "$WORK/block.data" >/dev/null 2>&1 &
BLOCK=$!
sleep 1
"$ROOT/target/release/vato-load" --host "http://127.0.0.1:$PORT" --scenarios messaging \
  --users 200 --hatch-rate 200 --run-time "$RUN_TIME" --msg-rate "${MSG_RATE:-10}" --no-print-metrics -q \
  >"$WORK/load.out" 2>&1 || true
kill -INT "$TRACE" "$BLOCK"
wait "$TRACE" "$BLOCK" || true
grep -E "delivered=|detail" "$WORK/load.out" || true
perf script -i "$WORK/block.data" -F comm,tid,time,event,trace >"$WORK/block.txt" 2>/dev/null
python3 - "$WORK/trace.txt" "$WORK/block.txt" "${SLOW_MS:-3}" <<'PY'
import bisect, re, sys
trace, block, slow_ms = sys.argv[1], sys.argv[2], float(sys.argv[3])
call = re.compile(r'^\s*([\d.]+) \(\s*([\d.]+) ms\): ([^/]+)/\d+ (\w+)\((.*?)\)\s+= ')
syncs, others = [], []
for line in open(trace):
    m = call.match(line)
    if not m:
        continue
    start, ms, thread, name, args = float(m[1]) / 1000, float(m[2]), m[3], m[4], m[5]
    if thread.startswith("vato-log-write"):
        if name == "fdatasync":
            syncs.append((start, ms))
    elif not (name == "write" and "count: 8" in args):  # eventfd wake-ups
        others.append((start, ms, thread, name, re.sub(r"buf: 0x\w+, ", "", args)[:40]))
inode = sorted(float(l.split()[2].rstrip(":")) for l in open(block)
               if "vato-log-writer" in l and "block_rq_issue" in l and " WSM " in l)
others.sort()
def summary(name, xs):
    xs = sorted(xs)
    if not xs:
        return print(f"{name}: none")
    q = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))]
    print(f"{name}: n={len(xs)} mean={sum(xs) / len(xs):.3f} p50={q(.5):.3f} p99={q(.99):.3f} "
          f"p99.9={q(.999):.3f} max={xs[-1]:.2f} ms, over 1 ms {sum(x > 1 for x in xs)}, over 2 ms {sum(x > 2 for x in xs)}")
with_inode, without = [], []
for start, ms in syncs:
    i = bisect.bisect_left(inode, start)
    (with_inode if i < len(inode) and inode[i] <= start + ms / 1000 else without).append(ms)
summary("WAL fdatasyncs", [ms for _, ms in syncs])
summary("  with an inode write", with_inode)
summary("  without", without)
starts = [o[0] for o in others]
slow = [s for s in syncs if s[1] >= slow_ms]
alone = 0
print(f"fdatasyncs of {slow_ms:g} ms or more: {len(slow)}")
for start, ms in slow:
    lo, hi = bisect.bisect_left(starts, start - 0.030), bisect.bisect_right(starts, start + ms / 1000)
    near = [o for o in others[lo:hi] if o[0] + o[1] / 1000 >= start - 0.005]
    alone += not near
    print(f"  {start:.3f} {ms:.2f} ms | " + ("; ".join(
        f"{o[2]} {o[3]} {1000 * (o[0] - start):+.1f} ms ({o[1]:.2f} ms) {o[4]}" for o in near[:4]) or "no other I/O"))
print(f"of which with no other I/O of the server within 5 ms: {alone}")
# The block layer's view: requests issued by anyone but the WAL's writer
# (the server's other threads, the kernel's writeback, other processes)
# while a sync ran or in the 2 ms before it; flushes (size 0) left out.
# A cause of slow syncs shows as a larger share among the slow ones.
foreign = []
for l in open(block):
    f = l.split()
    if len(f) < 8 or "block_rq_issue" not in l or f[0].startswith("vato-log-writ"):
        continue
    i = f.index("block:block_rq_issue:")
    rwbs, size = f[i + 2], f[i + 3]
    if size != "0" and "W" in rwbs:
        foreign.append((float(f[2].rstrip(":")), f[0].split("/")[0], rwbs))
foreign.sort()
ftimes = [x[0] for x in foreign]
def near(start, ms):
    lo, hi = bisect.bisect_left(ftimes, start - 0.002), bisect.bisect_right(ftimes, start + ms / 1000)
    return foreign[lo:hi]
share = lambda xs: sum(1 for s in xs if near(*s)) / max(1, len(xs))
print(f"writes by others in the block layer: {len(foreign)}; "
      f"share of syncs with one during them (or 2 ms before): all {100 * share(syncs):.1f} %, "
      f"{slow_ms:g} ms or more {100 * share(slow):.1f} %")
by = {}
for s in slow:
    for _, comm, rwbs in near(*s):
        by[(comm, rwbs)] = by.get((comm, rwbs), 0) + 1
print("  beside the slow ones, by whom: " + (", ".join(
    f"{c} {r} {n}" for (c, r), n in sorted(by.items(), key=lambda kv: -kv[1])[:8]) or "none"))
PY
echo "files in $WORK"
