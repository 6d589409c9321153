#!/usr/bin/env bash
# Before/after throughput of `weir bench`, interleaved so both builds see
# the same neighbours on a shared VM.
#
#   scripts/bench-ab.sh BEFORE_WEIR BEFORE_COMPONENTS [ROUNDS] [PARALLELISM] [PIPELINE]
#
# BEFORE_WEIR is a `weir` binary built from the other commit (in a git
# worktree with its own target directory) and BEFORE_COMPONENTS the folder
# with its passthrough.wasm and keyed_counter.wasm. Each round runs the
# before build, then this checkout's target/release/weir, with
# `--runs ${RUNS:-3} --events ${EVENTS:-10000000}`, and prints one line per
# build: the pipeline's best Wasm and native events/s. PIPELINE is a
# pattern of the pipeline's name (default: key_by). The medians of the
# rounds are printed at the end.
set -euo pipefail
before=${1:?usage: scripts/bench-ab.sh BEFORE_WEIR BEFORE_COMPONENTS [ROUNDS] [PARALLELISM] [PIPELINE]}
components=${2:?usage: scripts/bench-ab.sh BEFORE_WEIR BEFORE_COMPONENTS [ROUNDS] [PARALLELISM] [PIPELINE]}
rounds=${3:-6}
p=${4:-1}
pattern=${5:-key_by}
after="$(cd "$(dirname "$0")/.." && pwd)/target/release/weir"
args=(bench --runs "${RUNS:-3}" --events "${EVENTS:-10000000}" --parallelism "$p")
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for i in $(seq 1 "$rounds"); do
  b=$("$before" "${args[@]}" --components "$components" | grep -E "$pattern" | awk '{print $(NF-2), $(NF-1)}')
  a=$("$after" "${args[@]}" | grep -E "$pattern" | awk '{print $(NF-2), $(NF-1)}')
  echo "round $i  before: $b  after: $a"
  echo "$b $a" >> "$results"
done
median() { sort -n | awk '{v[NR]=$1} END {printf "%.0f", (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
echo "medians (events/s): before wasm $(cut -d' ' -f1 "$results" | median), native $(cut -d' ' -f2 "$results" | median);" \
  "after wasm $(cut -d' ' -f3 "$results" | median), native $(cut -d' ' -f4 "$results" | median)"
