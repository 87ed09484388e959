"""numpy's exact batched scan on one thread, the peer of `exactscan`:
normalise, float32 sgemm of a block of queries against every row, then
argpartition for the top k and a sort of those k. Prints the CSV row of
`index/examples/exactscan.rs` (engine,queries,rows,k,seconds,qps).

    OPENBLAS_NUM_THREADS=1 python benches/exact_scan.py BASE QUERIES DIM [K] [BLOCK]

BASE and QUERIES are raw float32 (.f32) or .npy files. The default block of
1,000 queries holds a 1,000 x 100,000 score matrix (400 MB) at once.
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
    block = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
    base = load(base_path, dim)
    queries = load(query_path, dim)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    started = time.perf_counter()
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    for i in range(0, len(q), block):
        scores = q[i : i + block] @ base.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        part = np.take_along_axis(scores, top, axis=1)
        np.take_along_axis(top, np.argsort(-part, axis=1), axis=1)
    s = time.perf_counter() - started
    print(f"numpy-sgemm,{len(q)},{len(base)},{k},{s:.3f},{len(q) / s:.1f}")


if __name__ == "__main__":
    main()
