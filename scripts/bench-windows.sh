#!/usr/bin/env bash
# Windows side by side with Flink, in one run (issue 7's targets):
#
#   scripts/bench-windows.sh [quick]
#
# 1. `weir bench` over Flink's throughput sequence (key i % 10,000, value
#    i, timestamp i ms): key_by → tumbling 1 s window sum, sliding 10 s /
#    1 s sum and session (gap 5 s) sum → discard, at p = 1 and 2;
# 2. Flink's ThroughputTumble, ThroughputSlide and ThroughputSession
#    (../shared/peers/flink) on the same sizes;
# 3. the ratios the targets name (tumble >= 3x, slide >= 10x, session >= 3x).
#
# Medians of RUNS (default 3) runs; EVENTS (default 20,000,000) events for
# tumbling, EVENTS_SLOW (default 5,000,000) for sliding and sessions (as
# the harness's README measures them). `quick`: 1 run of 1 M events, to
# check the script. Flink is skipped with a message where Java or the
# harness is missing. Needs `bash scripts/build.sh` first.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
weir="$root/target/release/weir"
flink="$root/../shared/peers/flink"
runs=${RUNS:-3}
events=${EVENTS:-20000000}
events_slow=${EVENTS_SLOW:-5000000}
parallelisms=${PARALLELISM:-1 2}
if [ "${1:-}" = quick ]; then
  runs=1
  events=1000000
  events_slow=1000000
fi
[ -x "$weir" ] || { echo "$weir is missing: run bash scripts/build.sh first" >&2; exit 1; }

have_flink=yes
if ! command -v java > /dev/null; then
  echo "# Flink skipped: java is not installed"
  have_flink=""
elif [ ! -x "$flink/run.sh" ]; then
  echo "# Flink skipped: no harness at $flink"
  have_flink=""
fi
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

printf "%-8s %3s %10s %14s %14s %8s %8s\n" window p events "weir ev/s" "flink ev/s" ratio target
for case in tumble slide session; do
  case $case in
    tumble) n=$events; program=ThroughputTumble; extra=(); target=3 ;;
    slide) n=$events_slow; program=ThroughputSlide; extra=(--size-ms 10000 --slide-ms 1000); target=10 ;;
    session) n=$events_slow; program=ThroughputSession; extra=(--gap-ms 5000); target=3 ;;
  esac
  for p in $parallelisms; do
    w=$("$weir" bench --runs "$runs" --events "$n" --parallelism "$p" --keys 10000 --pipelines "$case" | grep "key_by" | awk '{print $(NF-2)}')
    f="-"
    if [ -n "$have_flink" ]; then
      f=$(for _ in $(seq 1 "$runs"); do
        "$flink/run.sh" "$program" --n "$n" --p "$p" --keys 10000 "${extra[@]}" 2>/dev/null | grep -o 'eps_net=[0-9]*' | cut -d= -f2
      done | median)
    fi
    printf "%-8s %3s %10s %14s %14s %8s %7sx\n" "$case" "$p" "$n" "$w" "$f" "$(ratio "$w" "${f/-/0}")" "$target"
  done
done
