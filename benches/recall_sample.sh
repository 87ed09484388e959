#!/usr/bin/env bash
# What `serve --recall-sample` costs and whether it tells the truth, on one
# machine in one run:
#
# 1. Throughput: `stabspace serve` with --recall-sample 0 and 0.01, alternated
#    (ROUNDS rounds of each), under HTTP/1.1 keep-alive load from wrk
#    (single-vector searches at the default recall 0.95, cycling through
#    1,000 queries); prints queries per second per run, the medians and
#    their ratio, how many samples were checked and dropped, and the share
#    of the server's CPU time its checking thread took (from /proc: a figure
#    that other load on the machine does not blur, as it does throughput).
# 2. Agreement: a server with --recall-sample 1 answers the first 200 queries
#    one by one; once it has checked them, its gauge stabspace_observed_recall
#    (the mean of those 200) is compared with an offline exact check: the
#    same 200 queries asked with "exact": true (a scan of the database's
#    vectors, not of the partition) and the recall@10 of the served answers
#    counted here, tie-aware.
#
#   benches/recall_sample.sh [ROWS (100000)] [SECONDS per run (10)] [ROUNDS (5)]
#
# Scenario vectors from gen-scenarios (a base set of ROWS and its partition,
# and a query set of 1,000 from another seed) in a SQLite database under a
# work directory in ${TMPDIR:-/tmp}. Needs wrk (apt-get install wrk) and
# python3; Linux (/proc). About 6 minutes at the defaults on 2 cores; wrk's CPU comes out
# of the same cores as the server's (compare the ratio, not the figures).
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-100000}
secs=${2:-10}
rounds=${3:-5}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/stabspace-recall.XXXXXX")
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
cargo build --release --quiet
S=${CARGO_TARGET_DIR:-target}/release/stabspace
export STABSPACE_DATA_DIR="$work/data"
unset DATABASE_URL STABSPACE_READ_DATABASE_URL
mkdir -p "$STABSPACE_DATA_DIR"
MODEL=joint-stab-fragility-v1
"$S" gen-scenarios --scenario-set-id BENCH --count "$rows" | tail -2
"$S" gen-scenarios --scenario-set-id QUERIES --count 1000 --seed 2 --no-index | tail -1

# The query set's vectors as request bodies, one per line.
python3 - "$STABSPACE_DATA_DIR/stabspace.db" "$work/bodies.jsonl" <<'EOF'
import json, sqlite3, struct, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
rows = db.execute("SELECT vector FROM joint_embeddings WHERE entity_type = 'SCENARIO' "
                  "AND scope_id = 'QUERIES' ORDER BY entity_id").fetchall()
with open(sys.argv[2], "w") as f:
    for (v,) in rows:
        f.write(json.dumps({"vector": list(struct.unpack("<384f", v)), "k": 10}) + "\n")
print(f"{len(rows)} queries", file=sys.stderr)
EOF

cat >"$work/cycle.lua" <<'EOF'
local bodies = {}
local i = 0
function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
end
function request()
  i = i % #bodies + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[i])
end
EOF

# Start a server with the given flags; sets $server and $base.
start() {
  : >"$work/serve.out" # before the server starts: never the last one's address
  "$S" serve --addr 127.0.0.1:0 "$@" >"$work/serve.out" 2>"$work/serve.err" &
  server=$!
  for _ in $(seq 1 200); do
    base=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$work/serve.out")
    [ -n "$base" ] && return
    sleep 0.05
  done
  echo "the server did not start" >&2; cat "$work/serve.err" >&2; exit 1
}
stop() { kill "$server"; wait "$server" || true; server=; }
metric() { curl -s "$base/metrics" | awk -v n="$1" 'index($1, n "{") == 1 || $1 == n { s += $2 } END { print s + 0 }'; }
url() { echo "$base/v1/partitions/$MODEL/BENCH/search"; }
# The server's CPU time so far, in clock ticks: "checking-thread total".
cpu() {
  for t in /proc/"$server"/task/*; do
    echo "$(cat "$t/comm") $(awk '{ print $14 + $15 }' "$t/stat")"
  done | awk '$1 == "recall-checks" { c += $2 } { s += $2 } END { print c + 0, s + 0 }'
}

echo "== throughput: --recall-sample 0 and 0.01 alternated, $rounds rounds of ${secs} s, wrk -t2 -c8"
: >"$work/qps"
for round in $(seq 1 "$rounds"); do
  for share in 0 0.01; do
    start --recall-sample "$share"
    wrk -t2 -c8 -d2s -s "$work/cycle.lua" "$(url)" -- "$work/bodies.jsonl" >/dev/null # warm-up
    qps=$(wrk -t2 -c8 -d"${secs}s" -s "$work/cycle.lua" "$(url)" -- "$work/bodies.jsonl" |
      awk '/Requests\/sec/ { print $2 }')
    checked=$(metric stabspace_recall_samples_total)
    dropped=$(metric stabspace_recall_samples_dropped_total)
    read -r checks total < <(cpu)
    printf 'round %d  --recall-sample %-4s  %8.0f queries/s  (samples checked %s, dropped %s; checks %.1f%% of CPU)\n' \
      "$round" "$share" "$qps" "$checked" "$dropped" "$(echo "$checks $total" | awk '{ print 100 * $1 / $2 }')"
    echo "$share $qps $checks $total" >>"$work/qps"
    stop
  done
done
python3 - "$work/qps" <<'EOF'
import statistics, sys
runs, checks, total = {}, 0, 0
for line in open(sys.argv[1]):
    share, qps, c, t = line.split()
    runs.setdefault(share, []).append(float(qps))
    if share != "0":
        checks, total = checks + int(c), total + int(t)
off, on = statistics.median(runs["0"]), statistics.median(runs["0.01"])
print(f"median {off:.0f} queries/s without sampling, {on:.0f} with --recall-sample 0.01: "
      f"ratio {on / off:.3f} ({100 * (1 - on / off):+.1f}% cost); the checks took "
      f"{100 * checks / max(total, 1):.1f}% of the sampling server's CPU time")
EOF

echo "== agreement: --recall-sample 1, 200 queries, against an exact scan of the database"
start --recall-sample 1
python3 - "$(url)" "$base/metrics" "$work/bodies.jsonl" "$MODEL" <<'EOF'
import json, sys, time, urllib.request
url, metrics, bodies, model = sys.argv[1:]
queries = [json.loads(l) for l in open(bodies)][:200]
def post(body):
    r = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    return json.load(urllib.request.urlopen(r, timeout=600))
def series(name):
    text = urllib.request.urlopen(metrics).read().decode()
    want = f'{name}{{joint_model="{model}",scenario_set="BENCH"}} '
    return next((float(l[len(want):]) for l in text.splitlines() if l.startswith(want)), 0.0)
served = []
for q in queries:
    got = post(q)
    served.append([h["cosine"] for h in got["hits"]])
ef = got["ef"]
until = time.time() + 600
while series("stabspace_recall_samples_total") < len(queries):
    assert time.time() < until, "the checks did not finish"
    time.sleep(0.5)
live = series("stabspace_observed_recall")
exact = post({"vectors": [q["vector"] for q in queries], "k": 10, "exact": True})
recalls = []
for s, e in zip(served, exact["results"]):
    e = [h["cosine"] for h in e["hits"]]
    recalls.append(sum(1 for c in s if c >= e[-1] - 1e-6) / len(e))
offline = sum(recalls) / len(recalls)
print(f"ef {ef}: live recall@10 {live:.4f}, offline exact check {offline:.4f}, "
      f"difference {abs(live - offline):.4f} (target: within 0.02)")
EOF
stop
