#!/usr/bin/env bash
# Failover of a worker with state (issue 11's second target), by hand:
#
#   scripts/bench-failover.sh [KEYS]
#
# A coordinator with no slots and two `weir worker` processes on loopback;
# a keyed job (generator → key_by → keyed-counter, ValueState per key,
# KEYS keys, default 4,000,000, checkpoints every 2 s to the shared data
# directory) runs on one of them until its checkpoints hold 100 MiB or
# more. Then that worker is killed with SIGKILL, and the script prints
# how long until the coordinator noticed (the job RESTARTING) and until
# the job was processing again on the other worker (RUNNING, its
# counter's input growing). Needs `bash scripts/build.sh`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
weir="$root/target/release/weir"
keys=${1:-4000000}
component="$root/target/wasm32-wasip2/release/keyed_counter.wasm"
[ -x "$weir" ] && [ -f "$component" ] || { echo "run bash scripts/build.sh first" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
ms() { date +%s%3N; }
json() { curl -s "$url$1"; }

"$weir" coordinator --listen 127.0.0.1:0 --slots 0 --cluster-listen 127.0.0.1:0 --data-dir "$work/coordinator" \
  --allow-path "$work" > /dev/null 2> "$work/coordinator.log" &
pids+=($!)
for _ in $(seq 100); do grep -q -- "--join-token" "$work/coordinator.log" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'listening on http://[0-9.:]*' "$work/coordinator.log" | awk '{print $3}')
port=$(grep -o 'HOST:[0-9]*' "$work/coordinator.log" | cut -d: -f2)
token=$(cat "$work/coordinator/join-token")
declare -A worker_pid
for n in 1 2; do
  WEIR_JOIN_TOKEN="$token" "$weir" worker --coordinator "127.0.0.1:$port" --slots 2 --name "w$n" \
    --data-dir "$work/worker-$n" > /dev/null 2> "$work/worker-$n.log" &
  pids+=($!)
  worker_pid[w$n]=$!
done
until [ "$(json /v1/overview | grep -o '"workers":[0-9]*' | cut -d: -f2)" = 2 ]; do sleep 0.1; done

mkdir -p "$work/job"
cat > "$work/job/pipeline.yaml" <<YAML
name: failover
sources:
  - {id: gen, type: generator, seed: 1, count: 1000000000000, keys: $keys, value-size: 16, pattern: sequence}
operators:
  - {id: count, kind: process, component: $component, input: gen, key-by: '@key'}
sinks:
  - {id: out, type: discard, input: count}
checkpoints: {interval-ms: 2000, dir: $work/checkpoints}
YAML
id=$(WEIR_SERVER="$url" "$weir" submit "$work/job/pipeline.yaml" 2>/dev/null)
echo "job $id: waiting for 100 MiB of checkpointed state ($keys keys)"
while :; do
  bytes=$(json "/v1/jobs/$id/checkpoints" | grep -o '"latest-completed":{[^}]*' | grep -o '"state-size":[0-9]*' | head -1 | cut -d: -f2 || true)
  [ -n "$bytes" ] && [ "$bytes" -ge $((100 << 20)) ] && break
  sleep 1
done
echo "latest checkpoint: $((bytes >> 20)) MiB"
victim=$(json /v1/workers | grep -o "\"id\":\"w[12]\"[^}]*\"$id\"" | grep -o 'w[12]' | head -1 || true)
[ -n "$victim" ] || { echo "no worker holds job $id: $(json /v1/workers)" >&2; exit 1; }
kill -9 "${worker_pid[$victim]}"
killed=$(ms)
echo "killed worker $victim (SIGKILL)"
until json "/v1/jobs/$id" | grep -q '"restarts":[1-9]'; do sleep 0.05; done
noticed=$(ms)
before=""
while :; do
  job=$(json "/v1/jobs/$id")
  if echo "$job" | grep -q '"state":"RUNNING"'; then
    n=$(echo "$job" | grep -o '"numRecordsIn":[0-9]*' | sed -n 2p | cut -d: -f2 || true)
    if [ -n "$before" ] && [ -n "$n" ] && [ "$n" -gt "$before" ]; then break; fi
    before=${n:-0}
  fi
  sleep 0.05
done
again=$(ms)
echo "lost worker noticed after $((noticed - killed)) ms (target < 5,000)"
echo "processing again after $((again - killed)) ms (target < 15,000)"
