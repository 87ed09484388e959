#!/usr/bin/env bash
# The high-volume metrics backfill on PostgreSQL: 1,000 instruments, 2,000
# trading days, 10 portfolios with daily risk reports (about 19,000
# portfolio-days), STAB states at every month end, 100,000 scenarios.
# Prints portfolio-days per second on the index partition and with --exact,
# alternated in one run (compare the ratio, not the absolute figures).
#
#   benches/metrics_at_volume.sh [postgres://postgres@127.0.0.1:5432]
#
# Creates (and replaces) the database stabspace_volume on that server and a
# work directory under ${TMPDIR:-/tmp}. About 5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
server=${1:-postgres://postgres@127.0.0.1:5432}
db="$server/stabspace_volume"
work=$(mktemp -d "${TMPDIR:-/tmp}/stabspace-volume.XXXXXX")
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet
S=target/release/stabspace
run() { "$S" --database-url "$db" --data-dir "$work/data" "$@"; }

psql "$server/postgres" -qc "DROP DATABASE IF EXISTS stabspace_volume" -c "CREATE DATABASE stabspace_volume"
run generate --out "$work/m" --instruments 1000 --days 2000 --portfolios 10 --mc-scenarios 10 --crashes 20 >/dev/null
for kind in instruments prices portfolios risk-reports backtest-runs; do
  run import "$kind" "$work/m/${kind//-/_}.csv"
done
run gen-scenarios --scenario-set-id BENCH_100K --count 100000

# Month ends with a full 63-day window, from the generated calendar.
dates=$(awk -F, 'NR > 1 && $1 == "SYN0001.US" { print $2 }' "$work/m/prices.csv" |
  awk '{ d[NR] = $0 } END { for (i = 64; i <= NR; i++) if (i == NR || substr(d[i+1], 1, 7) != substr(d[i], 1, 7)) print d[i] }')
for d in $dates; do
  run backfill-numeric-embeddings --as-of "$d" --market-id US_EQ --model-id num-stab-core-v1 >/dev/null
  run backfill-joint-stab-fragility-states --as-of "$d" --market-id US_EQ >/dev/null
done
echo "states at $(echo "$dates" | wc -w) month ends"

for mode in index exact index exact; do
  flag=(); [ "$mode" = exact ] && flag=(--exact)
  printf '%-6s ' "$mode"
  run backfill-portfolio-stab-scenario-metrics --scenario-set-id BENCH_100K \
    --start 2000-01-01 --end 2100-01-01 "${flag[@]}"
done
run backfill-backtest-stab-scenario-metrics --strategy-id US_EQ_CORE_LONG | head -1
