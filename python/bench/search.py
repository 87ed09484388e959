#!/usr/bin/env python3
"""stabspace from Python against hnswlib from Python, in one run.

1. `Partition.search_batch` of the query set against hnswlib's `knn_query`, at
   equal threads, each at the smallest breadth of a sweep that reaches the
   target recall@k (measured against an exact scan): queries per second and
   their ratio.
2. The per-call overhead of `Partition.search` on one 1-row query: the Python
   call (argument checks, result arrays) against the same searches timed inside
   Rust (`Partition._time_search`), on this partition and on a small flat one.

    python -m venv .venv && .venv/bin/pip install ./python hnswlib numpy
    .venv/bin/python ../shared/bench/scenario_vectors.py --out /tmp/bench-data --n 100000 --queries 1000
    .venv/bin/python python/bench/search.py \\
        --base /tmp/bench-data/scen_100000.f32 --queries /tmp/bench-data/scen_q_1000.f32 --threads 2

Inputs: raw little-endian float32 (.f32, give --dim), .npy or .fvecs. Figures
are printed and, with --json FILE, written as JSON.
"""
import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import stabspace


def load(path: str, dim: int) -> np.ndarray:
    if path.endswith(".npy"):
        return np.load(path).astype(np.float32, copy=False)
    if path.endswith(".fvecs"):
        raw = np.fromfile(path, dtype=np.int32)
        d = raw[0]
        return raw.reshape(-1, d + 1)[:, 1:].view(np.float32).copy()
    return np.fromfile(path, dtype=np.float32).reshape(-1, dim)


def best_of(repeat: int, fn):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times), out


def recall(got_rows, truth) -> float:
    return float(np.mean([len(set(g) & set(t)) / len(t) for g, t in zip(got_rows, truth)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef", default="16,24,32,48,64,96,128,192,256,384,512,768")
    ap.add_argument("--target", type=float, default=0.95, help="recall@k both engines must reach")
    ap.add_argument("--threads", type=int, default=2, help="hnswlib's num_threads; set RAYON_NUM_THREADS to the same")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--partition", help="an existing partition of --base to use (default: build one)")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    # Equal threads: the Rust pool starts on first use and reads this then.
    if os.environ.get("RAYON_NUM_THREADS") not in (None, str(a.threads)):
        ap.error(f"RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']} but --threads {a.threads}")
    os.environ["RAYON_NUM_THREADS"] = str(a.threads)

    base, queries = load(a.base, a.dim), load(a.queries, a.dim)
    efs = [int(e) for e in a.ef.split(",")]
    out = {"n": len(base), "queries": len(queries), "k": a.k, "threads": a.threads,
           "rayon_threads": os.environ.get("RAYON_NUM_THREADS", "default"), "target": a.target}
    print(f"{len(base)} base vectors, {len(queries)} queries, k={a.k}, threads={a.threads}, target recall {a.target}")

    tmp = tempfile.TemporaryDirectory()
    path = a.partition or str(Path(tmp.name) / "bench.stabidx")
    if not a.partition:
        ids = [str(i) for i in range(len(base))]
        t = time.perf_counter()
        stabspace.build(path, ids, base, m=a.m, ef_construction=a.ef_construction)
        out["stabspace_build_s"] = time.perf_counter() - t
        print(f"stabspace.build: {out['stabspace_build_s']:.1f} s")
    p = stabspace.Partition(path)
    truth = p.search_exact(queries, k=a.k).rows

    import hnswlib

    h = hnswlib.Index(space="cosine", dim=a.dim)
    t = time.perf_counter()
    h.init_index(max_elements=len(base), M=a.m, ef_construction=a.ef_construction, random_seed=100)
    h.add_items(base, np.arange(len(base)), num_threads=a.threads)
    out["hnswlib_build_s"] = time.perf_counter() - t
    print(f"hnswlib build:   {out['hnswlib_build_s']:.1f} s")

    def ours(ef):
        return p.search_batch(queries, k=a.k, ef=ef).rows

    def theirs(ef):
        h.set_ef(max(ef, a.k))
        return h.knn_query(queries, k=a.k, num_threads=a.threads)[0]

    rows = []
    print(f"{'engine':10} {'ef':>5} {'recall':>7} {'q/s (best)':>11} {'q/s (median)':>13}")
    for name, fn in (("stabspace", ours), ("hnswlib", theirs)):
        for ef in efs:
            best, median, got = best_of(a.repeat, lambda: fn(ef))
            r = recall(got, truth)
            rows.append({"engine": name, "ef": ef, "recall": r, "qps": len(queries) / best,
                         "qps_median": len(queries) / median})
            print(f"{name:10} {ef:5} {r:7.3f} {len(queries) / best:11.0f} {len(queries) / median:13.0f}")
            if r >= a.target + 0.01:
                break
    out["sweep"] = rows
    at = {}
    for name in ("stabspace", "hnswlib"):
        ok = [r for r in rows if r["engine"] == name and r["recall"] >= a.target]
        at[name] = ok[0] if ok else None
    out["at_target"] = at
    if at["stabspace"] and at["hnswlib"]:
        ratio = at["stabspace"]["qps"] / at["hnswlib"]["qps"]
        out["batch_ratio"] = ratio
        print(f"at recall >= {a.target}: stabspace ef {at['stabspace']['ef']} "
              f"({at['stabspace']['recall']:.3f}, {at['stabspace']['qps']:.0f} q/s) vs hnswlib ef "
              f"{at['hnswlib']['ef']} ({at['hnswlib']['recall']:.3f}, {at['hnswlib']['qps']:.0f} q/s): "
              f"{ratio:.2f}x")

    # Per-call overhead of search() on one 1-row query.
    def overhead(part, ef, label):
        qs = queries[:300]
        for q in qs[:20]:
            part.search(q, k=a.k, ef=ef)
        py_best = float("inf")
        rust_best = float("inf")
        for _ in range(a.repeat):
            t = time.perf_counter()
            for q in qs:
                part.search(q, k=a.k, ef=ef)
            py_best = min(py_best, time.perf_counter() - t)
            rust_best = min(rust_best, sum(part._time_search(q, k=a.k, ef=ef, repeat=1) for q in qs))
        per_py, per_rust = py_best / len(qs) * 1e6, rust_best / len(qs) * 1e6
        print(f"search() on {label}: {per_py:.1f} us per call from Python, {per_rust:.1f} us inside Rust: "
              f"overhead {per_py - per_rust:.1f} us ({per_py / per_rust:.3f}x)")
        return {"partition": label, "python_us": per_py, "rust_us": per_rust, "overhead_us": per_py - per_rust,
                "ratio": per_py / per_rust}

    ef_target = at["stabspace"]["ef"] if at["stabspace"] else p.ef_for(a.target)
    small = str(Path(tmp.name) / "small.stabidx")
    stabspace.build(small, [str(i) for i in range(1000)], base[:1000])
    out["overhead"] = [
        overhead(p, ef_target, f"{len(base)} rows, ef {ef_target}"),
        overhead(stabspace.Partition(small), None, "1000 rows, flat (exact scan)"),
    ]
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
