#!/usr/bin/env bash
# loadtest/cpu-split.sh RATE DATA_PARENT: who uses the two cores at RATE
# msg/s, once the load is steady (BENCHMARKS.md, "The client's share").
# Starts a fresh vato-server (SERVER, default target/release/vato-server)
# on a fresh directory under DATA_PARENT, runs vato-load's messaging
# scenario (LOAD, default target/release/vato-load; 200 users, RATE/200
# msg/s each, RUN_TIME 20s after all are connected) and reads every
# thread's CPU time on the machine (/proc/PID/task/TID/stat) at 11 s and
# at 25 s after the load starts, so the window holds no connecting. Prints
# the load's summary, the machine's split (user, system, softirq, idle,
# steal, in % of one core: 200 % is both) and the threads that used most,
# grouped by process and thread name. A thread that ends inside the
# window (a snapshot's) is in the machine's line only.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RATE=${1:?rate} PARENT=${2:?data parent}
SERVER=${SERVER:-$ROOT/target/release/vato-server}
LOAD=${LOAD:-$ROOT/target/release/vato-load}
WORK=$(mktemp -d "${TMPFS_DIR:-/dev/shm}/vato-split.XXXXXX")
mkdir -p "$PARENT"
DATA=$(mktemp -d "$PARENT/vato-split.XXXXXX")
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$SERVER" --dev --register-rate 0 --user-msg-rate 0 --user-bytes-rate 0 \
  --listen "127.0.0.1:$PORT" --data-dir "$DATA" >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
"$LOAD" --host "http://127.0.0.1:$PORT" --scenarios messaging --users 200 --hatch-rate 25 \
  --run-time "${RUN_TIME:-20s}" --msg-rate "$(python3 -c "print($RATE / 200)")" \
  --no-print-metrics -q >"$WORK/load.out" 2>&1 &
LOADPID=$!
snap() {
  python3 - "$1" <<'PY'
import json, os, sys
threads = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        proc = open(f"/proc/{pid}/comm").read().strip()
        for tid in os.listdir(f"/proc/{pid}/task"):
            stat = open(f"/proc/{pid}/task/{tid}/stat").read()
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            threads[f"{pid}/{tid}"] = (proc, name, int(fields[11]) + int(fields[12]))
    except OSError:
        pass
machine = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
json.dump({"threads": threads, "machine": machine}, open(sys.argv[1], "w"))
PY
}
sleep 11
snap "$WORK/a.json"
sleep 14
snap "$WORK/b.json"
wait "$LOADPID" || true
grep -E '^vato-load: delivered=' "$WORK/load.out" || tail -5 "$WORK/load.out"
python3 - "$WORK/a.json" "$WORK/b.json" <<'PY'
import json, re, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
d = [y - x for x, y in zip(a["machine"], b["machine"])]
total = sum(d)
names = "user nice system idle iowait irq softirq steal".split()
print("machine: " + " ".join(f"{n}={200 * v / total:.0f}%" for n, v in zip(names, d)))
ticks_per_core = total / 2
groups = {}
for key, (proc, name, t) in b["threads"].items():
    # A thread started inside the window used all of its time in it.
    used = t - a["threads"][key][2] if key in a["threads"] else t
    # kworker/1:1H-kblockd and the like: one group per kind of thread
    group = f"{proc}/{re.sub(r'[/:-].*', '', name) if proc.startswith('kworker') else name}"
    groups[group] = groups.get(group, 0) + used
for group, used in sorted(groups.items(), key=lambda kv: -kv[1])[:10]:
    if used:
        print(f"  {group:40s} {100 * used / ticks_per_core:5.1f}% of one core")
PY
