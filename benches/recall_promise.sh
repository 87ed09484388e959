#!/usr/bin/env bash
# Does `--recall 0.95` deliver 0.95 on the queries users send? For each seed,
# a generated market (300 instruments, 900 days, 30,000 Monte Carlo
# scenarios; issue #27's case), states backfilled on its last two dates under
# the v2 and v3 encoders, the MC set indexed; the partition calibrated on the
# states of the day before the last (`index calibrate --as-of`), then
# `stabspace bench --promise` queries with the last day's states: for the
# held-out rows' calibration (what every build did before) and the states'
# one, the breadth each chooses for 0.95, the recall it delivers on those
# states, and the smallest breadth that reaches 0.95 on them.
#
#   benches/recall_promise.sh [SEED ...]      (default: 5 7 11)
#
# Env: INSTRUMENTS (300), DAYS (900), MC (30000), ENCODERS ("v2 v3"). The
# embedded SQLite database of a work directory under ${TMPDIR:-/tmp}; about
# 5 minutes per seed on 2 cores. Real-return vectors: see the same check with
# --base in the README (Benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${*:-5 7 11}
instruments=${INSTRUMENTS:-300}
days=${DAYS:-900}
mc=${MC:-30000}
encoders=${ENCODERS:-v2 v3}
cargo build --release --quiet
S=$(pwd)/target/release/stabspace
for seed in $seeds; do
  work=$(mktemp -d "${TMPDIR:-/tmp}/stabspace-promise.XXXXXX")
  run() { "$S" --data-dir "$work/data" "$@"; }
  run generate --out "$work/m" --instruments "$instruments" --days "$days" --mc-scenarios "$mc" --seed "$seed" >/dev/null
  for kind in instruments prices scenarios scenario-paths; do
    run import "$kind" "$work/m/${kind//-/_}.csv" >/dev/null
  done
  # The last two trading days of the generated calendar.
  read -r before last < <(awk -F, 'NR > 1 { print $2 }' "$work/m/prices.csv" | sort -u | tail -n 2 | xargs)
  for enc in $encoders; do
    joint="joint-stab-fragility-$enc"
    for d in "$before" "$last"; do
      run backfill-numeric-embeddings --as-of "$d" --market-id US_EQ --window-days 20 --model-id "num-stab-core-$enc" >/dev/null
      run backfill-joint-stab-fragility-states --as-of "$d" --market-id US_EQ --stab-model-id "num-stab-core-$enc" \
        --joint-model-id "$joint" >/dev/null
    done
    run backfill-numeric-scenario-embeddings --scenario-set-id MC_STRESS_V0 --model-id "num-scenario-core-$enc" >/dev/null
    run backfill-joint-stab-fragility-scenarios --scenario-set-id MC_STRESS_V0 \
      --scenario-model-id "num-scenario-core-$enc" --joint-model-id "$joint" --no-index >/dev/null
    run index build --model-id "$joint" --scenario-set-id MC_STRESS_V0 >/dev/null
    run index calibrate --model-id "$joint" --scenario-set-id MC_STRESS_V0 --as-of "$before" >/dev/null
    echo "== seed $seed, $enc: calibrated on the states of $before, queried with those of $last"
    run bench --model-id "$joint" --scenario-set-id MC_STRESS_V0 --as-of "$last" --ef 32 --promise \
      --targets 0.90,0.95,0.98 | sed -n '/recall promise/,$p'
  done
  rm -rf "$work"
done
