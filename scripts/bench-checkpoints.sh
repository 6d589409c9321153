#!/usr/bin/env bash
# Incremental checkpoints of about 1 GiB of keyed state (issue 9's
# targets), and the time to recover it:
#
#   scripts/bench-checkpoints.sh [quick]
#
# 1. fill: a `sequence` generator over KEYS keys (default 38,000,000)
#    → key-by → keyed_counter (ValueState, lsm backend, all of it in
#    memory) → discard, a full checkpoint every 20 s; stopped (SIGKILL) once a
#    checkpoint has grown by under 1 % over the one before: every key has
#    state, and that checkpoint is the full picture (about 1 GiB).
# 2. touch: the same operator restored from that checkpoint
#    (`--from-savepoint`), fed random keys at KEYS/100 per checkpoint
#    interval (INTERVAL_MS, default 5000): about 1 % of the state changes
#    between two checkpoints. The first checkpoint after a restore is full,
#    the next ones hold what changed. Runs TOUCH_SECONDS (default 90).
#
# Prints each checkpoint of both phases (size, duration from trigger to
# metadata) from the job's log, the restore time, and the ratio of the
# median incremental checkpoint to the full one. `quick` uses 2 M keys.
# Needs `bash scripts/build.sh`. Leaves its files in WORK (default a
# temporary folder, removed at the end).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
weir="$root/target/release/weir"
counter="$root/target/wasm32-wasip2/release/keyed_counter.wasm"
keys=${KEYS:-38000000}
interval=${INTERVAL_MS:-5000}
touch_seconds=${TOUCH_SECONDS:-90}
if [ "${1:-}" = quick ]; then
  keys=2000000
  touch_seconds=30
fi
[ -x "$weir" ] && [ -f "$counter" ] || { echo "run bash scripts/build.sh first" >&2; exit 1; }
work=${WORK:-$(mktemp -d)}
[ -n "${WORK:-}" ] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work"
cd "$work"
# REUSE=1 with WORK: keep the fill of an earlier run, measure the touch again.
if [ -z "${REUSE:-}" ]; then
  rm -rf checkpoints fill.log
fi
rm -rf checkpoints/touch touch.log

job() { # name, source line, interval, incremental
  cat <<EOF
name: $1
state: {backend: lsm, memory-mb: 16384}
sources:
  - $2
operators:
  - {id: count, kind: process, component: $counter, input: events, key-by: "@key"}
sinks:
  - {id: out, type: discard, input: count}
checkpoints: {interval-ms: $3, dir: checkpoints, incremental: $4}
EOF
}
job fill "{id: events, type: generator, pattern: sequence, keys: $keys}" 20000 false > fill.yaml
# 1 % of the keys per interval (random keys repeat a little: slightly
# under 1 % distinct).
rate=$((keys / 100 * 1000 / interval))
job touch "{id: events, type: generator, keys: $keys, rate: $rate, seed: 7}" "$interval" true > touch.yaml

sizes() { { grep -o 'checkpoint [0-9]* of `[a-z]*` completed: [0-9]* bytes in [0-9]* ms' "$1" || true; } | awk '{print $2, $6, $9}'; }

if [ -z "${REUSE:-}" ]; then
echo "# fill: $keys keys"
WEIR_LOG=warn,weir_runtime=info "$weir" run fill.yaml --no-server > fill.log 2>&1 &
pid=$!
last=0
seen=""
while kill -0 "$pid" 2> /dev/null; do
  sleep 2
  read -r id now _ < <(sizes fill.log | tail -1; echo)
  if [ -n "$id" ] && [ "$id" != "$seen" ]; then
    if [ "$last" -gt 0 ] && [ $((now - last)) -lt $((last / 100)) ]; then
      kill -9 "$pid"
      break
    fi
    seen=$id
    last=$now
  fi
done
wait "$pid" 2> /dev/null || true
fi
sizes fill.log | awk '{printf "fill checkpoint %s: %d bytes in %d ms\n", $1, $2, $3}'
chk=$(ls -d checkpoints/fill/chk-* | sort -t- -k2 -n | tail -1)
[ -f "$chk/_metadata" ] || { echo "no completed checkpoint of the fill" >&2; exit 1; }

echo "# touch: restored from $chk, $rate random keys/s, a checkpoint every $interval ms, $touch_seconds s"
started=$(date +%s.%N)
WEIR_LOG=warn,weir_runtime=info timeout -s KILL "$touch_seconds" "$weir" run touch.yaml --no-server \
  --from-savepoint "$chk" > touch.log 2>&1 || true
grep -o 'restored every task from checkpoint.* in [0-9]* ms' touch.log || true
sizes touch.log | awk '{printf "touch checkpoint %s: %d bytes in %d ms\n", $1, $2, $3}'
du -sh checkpoints/touch/shared 2> /dev/null || true
full=$(sizes touch.log | head -1 | awk '{print $2}')
sizes touch.log | tail -n +2 | awk -v full="$full" '{print $2, $3}' | sort -n | awk -v full="$full" '
  {b[NR]=$1} END {
    if (NR == 0) { print "no incremental checkpoint completed"; exit }
    m=b[int((NR+1)/2)];
    printf "median incremental checkpoint: %d bytes, %.2f %% of the full %d\n", m, 100*m/full, full }'
sizes touch.log | tail -n +2 | awk '{print $3}' | sort -n | awk '
  {d[NR]=$1} END { if (NR) printf "incremental durations: median %d ms, max %d ms\n", d[int((NR+1)/2)], d[NR] }'
echo "(elapsed since the touch run started: $(echo "$(date +%s.%N) - $started" | bc) s)"
