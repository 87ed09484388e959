#!/usr/bin/env bash
# The exact batched scan on one thread against numpy, alternated in one run:
# ours on the int8 codes (`search_batch` without ef), ours on the f32 vectors
# (the scan it replaced), and numpy's float32 sgemm + argpartition (and its
# sgemm alone) on the same files. Compare the ratios within the run.
#
#   benches/exact_scan.sh BASE QUERIES [DIM] [ROUNDS]
#
# BASE, QUERIES: float32 .npy or raw .f32 files (e.g. from
# ../shared/bench/scenario_vectors.py). Needs a python3 with numpy (PYTHON=…).
# The example also checks that its answers equal an f64 brute force.
set -euo pipefail
cd "$(dirname "$0")/.."
base=$1 queries=$2 dim=${3:-384} rounds=${4:-2}
python=${PYTHON:-python3}
index=$(mktemp -d "${TMPDIR:-/tmp}/stabspace-exact.XXXXXX")
trap 'rm -rf "$index"' EXIT
cargo build --release --quiet -p stabspace-index --example exactscan
for round in $(seq "$rounds"); do
  target/release/examples/exactscan --base "$base" --queries "$queries" --dim "$dim" \
    --rounds 1 --index "$index/p.stabidx" | tail -n +$([ "$round" = 1 ] && echo 1 || echo 2)
  # numpy as users run it: OpenBLAS picks its own kernel (../shared/PERFORMANCE.md).
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
    "$python" benches/exact_scan.py "$base" "$queries" "$dim"
done
