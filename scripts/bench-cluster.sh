#!/usr/bin/env bash
# The cluster against local mode, in one run (issue 11's benchmark):
#
#   scripts/bench-cluster.sh [quick]
#
# 1. generator → key_by(@key) → keyed-counter (Wasm, ValueState) → discard
#    at parallelism 2 (10,000 keys, 100-byte values): `weir run` (local
#    mode, one process), then a coordinator with no slots of its own and
#    two `weir worker` processes of one slot each on loopback, so the job
#    is spread over both and about half of its events cross QUIC;
# 2. events/s of each (events ÷ the job's duration) and their ratio, and
#    the CPU seconds of the processes (user + system) per million events;
# 3. QUIC against raw loopback TCP: `weir-net`'s quic_vs_tcp example.
#
# Median of RUNS (default 3) runs of EVENTS (default 20,000,000) events.
# `quick`: 2,000,000 events, one run. Needs `bash scripts/build.sh`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
weir="$root/target/release/weir"
runs=${RUNS:-3}
events=${EVENTS:-20000000}
if [ "${1:-}" = quick ]; then
  runs=1
  events=2000000
fi
[ -x "$weir" ] || { echo "$weir is missing: run bash scripts/build.sh first" >&2; exit 1; }
component="$root/target/wasm32-wasip2/release/keyed_counter.wasm"
[ -f "$component" ] || { echo "$component is missing: run bash scripts/build.sh first" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

per_subtask=$((events / 2))
spec="$work/spec/pipeline.yaml"
mkdir -p "$work/spec"
cat > "$spec" <<YAML
name: keyed-bench
parallelism: 2
sources:
  - {id: gen, type: generator, seed: 1, count: $per_subtask, keys: 10000, value-size: 100, pattern: random}
operators:
  - {id: op, kind: process, component: $component, input: gen, key-by: '@key'}
sinks:
  - {id: out, type: discard, input: op}
YAML

# CPU seconds (user + system) of process $1 so far.
cpu_of() {
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }

export WEIR_CACHE_DIR="$work/cache"
"$weir" run "$spec" --no-server >/dev/null 2>&1 # warm-up: compiles the component
local_rates=() local_cpu=()
for _ in $(seq "$runs"); do
  start=$(date +%s.%N)
  /usr/bin/env time -f "%U %S" -o "$work/time" "$weir" run "$spec" --no-server > /dev/null 2> "$work/run.log"
  end=$(date +%s.%N)
  secs=$(grep -o 'finished in [0-9.]* s' "$work/run.log" | awk '{print $3}')
  [ -n "$secs" ] || secs=$(echo "$end - $start" | bc -l)
  local_rates+=("$(echo "$events / $secs" | bc -l)")
  local_cpu+=("$(awk '{print $1 + $2}' "$work/time")")
done

"$weir" coordinator --listen 127.0.0.1:0 --slots 0 --cluster-listen 127.0.0.1:0 --data-dir "$work/coordinator" \
  --allow-path "$work" > /dev/null 2> "$work/coordinator.log" &
pids+=($!)
coordinator=$!
for _ in $(seq 100); do grep -q -- "--join-token" "$work/coordinator.log" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'listening on http://[0-9.:]*' "$work/coordinator.log" | awk '{print $3}')
port=$(grep -o 'HOST:[0-9]*' "$work/coordinator.log" | cut -d: -f2)
token=$(cat "$work/coordinator/join-token")
workers=()
for n in 1 2; do
  WEIR_JOIN_TOKEN="$token" "$weir" worker --coordinator "127.0.0.1:$port" --slots 1 --name "bench-$n" \
    --data-dir "$work/worker-$n" > /dev/null 2> "$work/worker-$n.log" &
  pids+=($!)
  workers+=($!)
done
for _ in $(seq 100); do
  [ "$(curl -s "$url/v1/overview" | grep -o '"workers":[0-9]*' | cut -d: -f2)" = 2 ] && break
  sleep 0.1
done

# One job on the cluster; prints its events/s and the CPU seconds it took.
cluster_run() {
  local before after id state
  before=$(for p in "$coordinator" "${workers[@]}"; do cpu_of "$p"; done | paste -sd+ | bc -l)
  id=$(WEIR_SERVER="$url" "$weir" submit "$spec" 2>/dev/null)
  while :; do
    state=$(curl -s "$url/v1/jobs/$id" | grep -o '"state":"[A-Z]*"' | head -1 | cut -d'"' -f4)
    case "$state" in FINISHED) break ;; FAILED | CANCELED) echo "the job $id ended $state" >&2; exit 1 ;; esac
    sleep 0.25 # (polling costs CPU the job would use)
  done
  after=$(for p in "$coordinator" "${workers[@]}"; do cpu_of "$p"; done | paste -sd+ | bc -l)
  local ms
  ms=$(curl -s "$url/v1/jobs/$id" | grep -o '"duration":[0-9]*' | head -1 | cut -d: -f2)
  echo "$(echo "$events / ($ms / 1000)" | bc -l) $(echo "$after - $before" | bc -l)"
}
cluster_run > /dev/null # warm-up: the workers fetch and compile the component
cluster_rates=() cluster_cpu=()
for _ in $(seq "$runs"); do
  read -r rate cpu < <(cluster_run)
  cluster_rates+=("$rate")
  cluster_cpu+=("$cpu")
done

local_rate=$(printf '%s\n' "${local_rates[@]}" | median)
cluster_rate=$(printf '%s\n' "${cluster_rates[@]}" | median)
local_c=$(printf '%s\n' "${local_cpu[@]}" | median)
cluster_c=$(printf '%s\n' "${cluster_cpu[@]}" | median)
echo "# keyed counter, p = 2, $events events, median of $runs runs"
printf 'local mode (one process):     %12.0f events/s  %6.3f CPU s per M events\n' "$local_rate" \
  "$(echo "$local_c / ($events / 1000000)" | bc -l)"
printf 'two workers over QUIC:        %12.0f events/s  %6.3f CPU s per M events\n' "$cluster_rate" \
  "$(echo "$cluster_c / ($events / 1000000)" | bc -l)"
printf 'ratio (target >= 0.70):       %12.2f\n' "$(echo "$cluster_rate / $local_rate" | bc -l)"
echo
echo "# QUIC data plane against raw loopback TCP"
cargo run -q --release -p weir-net --example quic_vs_tcp -- "${QUIC_MB:-1024}"
