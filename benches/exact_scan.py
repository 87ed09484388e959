"""numpy's exact batched scan on one thread, the peer of `exactscan`:
normalise, float32 sgemm of a block of queries against every row, then
argpartition for the top k and a sort of those k. Prints CSV rows like
`index/examples/exactscan.rs` (engine,queries,rows,k,seconds,qps): the
fastest of blocks of 100, 250 and 1,000 queries (`numpy-sgemm-argpartition`),
and the matrix products of that block alone (`numpy-sgemm-only`, the bound
of any method that writes the score matrix out).

    OPENBLAS_NUM_THREADS=1 python benches/exact_scan.py BASE QUERIES DIM [K]

BASE and QUERIES are raw float32 (.f32) or .npy files.
"""
import sys
import time

import numpy as np


def load(path, dim):
    if path.endswith(".npy"):
        return np.load(path).astype(np.float32)
    return np.fromfile(path, dtype=np.float32).reshape(-1, dim)


def main():
    base_path, query_path, dim = sys.argv[1], sys.argv[2], int(sys.argv[3])
    k = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    base = load(base_path, dim)
    queries = load(query_path, dim)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    best = None
    for block in (100, 250, 1000):
        started = time.perf_counter()
        gemm = 0.0
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        for i in range(0, len(q), block):
            t = time.perf_counter()
            scores = q[i : i + block] @ base.T
            gemm += time.perf_counter() - t
            top = np.argpartition(-scores, k, axis=1)[:, :k]
            part = np.take_along_axis(scores, top, axis=1)
            np.take_along_axis(top, np.argsort(-part, axis=1), axis=1)
        s = time.perf_counter() - started
        if best is None or s < best[0]:
            best = (s, gemm, block)
    s, gemm, block = best
    n = len(queries)
    print(f"numpy-sgemm-argpartition,{n},{len(base)},{k},{s:.3f},{n / s:.1f}")
    print(f"numpy-sgemm-only,{n},{len(base)},{k},{gemm:.3f},{n / gemm:.1f}")
    print(f"# numpy: blocks of {block} queries were fastest", file=sys.stderr)


if __name__ == "__main__":
    main()
