#!/usr/bin/env python3
"""Filtered search in hnswlib on the same vectors, keys and filters as
`stabspace bench --selectivity`, so the two outputs can be compared side by side
(modelled on shared/bench/peer_ann.py).

Every base row has a key (the file written by `stabspace bench --keys-out`, one
integer per line). For each selectivity s (percent), the filter admits the rows
whose key is below the cut = 1 + the ceil(n*s/100)-th smallest key, the rule of
`stabspace bench` (src/bench.rs, key_cut). hnswlib searches with
knn_query(q, k, filter=lambda label: keys[label] < cut): filtered-out nodes are
traversed but not returned. Recall is measured against the exact filtered top-k
(numpy, float64 cosines) and is tie-aware as in peer_ann.py: a returned id counts
when its cosine is at least the k-th exact cosine minus 1e-6.

Note: hnswlib's filter is a Python callable, called for every node the search
reaches; its cost (a Python call per node) is part of the measured time, as it
is for any user of its Python API. FAISS (IndexHNSWFlat, inner product) filters
in C++ with an IDSelectorBitmap built once per selectivity
(SearchParametersHNSW(sel=..., efSearch=ef)): no Python in the loop, the fair
comparison of the search itself. --engines picks them (default both).

Set-up once:   python3 -m pip install numpy hnswlib faiss-cpu threadpoolctl
Example:       stabspace bench --base base.f32 --dim 384 --queries q.f32 --selectivity 1,10,50,100 \\
                   --keys-out keys.txt --ef 32,64,128,256 --csv ours.csv
               python3 peer_filtered.py --base base.f32 --queries q.f32 --dim 384 --keys keys.txt \\
                   --selectivity 1,10,50,100 --ef 32,64,128,256 > peers.csv

Prints one CSV row per (engine, selectivity, ef) with the columns of
`stabspace bench --csv` (peer_ann.py's, then qps_all_threads, p95_us, open_us,
bytes_per_vector left empty where not measured, then selectivity), so the files
concatenate. A query for which hnswlib cannot return k results (it raises) counts
its missing results as misses; the count of such queries goes to stderr.
"""
import argparse
import sys
import time

import numpy as np

COLUMNS = ("engine,n,dim,k,M,efc,ef,recall,qps,p50_us,p99_us,build_s,threads,"
           "qps_all_threads,p95_us,open_us,bytes_per_vector,selectivity")


def load(path, dim):
    if path.endswith(".npy"):
        return np.load(path, mmap_mode="r").astype(np.float32)
    if path.endswith(".fvecs"):
        raw = np.fromfile(path, dtype=np.int32)
        d = raw[0]
        return raw.reshape(-1, d + 1)[:, 1:].view(np.float32).copy()
    if dim is None:
        sys.exit(f"{path}: raw float32 file needs --dim")
    return np.fromfile(path, dtype="<f4").reshape(-1, dim)


def normalise(x):
    n = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(n == 0) or not np.all(np.isfinite(x)):
        sys.exit("input has zero or non-finite vectors")
    return np.ascontiguousarray(x / n, dtype=np.float32)


def key_cut(keys, pct):
    """The smallest bound admitting at least pct % of the keys (key < bound)."""
    s = np.sort(keys)
    want = min(max(-(-len(s) * pct // 100), 1), len(s))
    return int(s[want - 1]) + 1


def exact_kth(base64, admitted, queries, k):
    """Per query, the k-th best cosine (float64) among the admitted rows, and how many there are."""
    sub = base64[admitted]
    kk = min(k, len(admitted))
    kth = np.empty(len(queries))
    for i, q in enumerate(queries):
        sims = sub @ q.astype(np.float64)
        kth[i] = np.partition(sims, len(sims) - kk)[len(sims) - kk]
    return kth, kk


def timed_queries(search_one, queries):
    lat = []
    results = []
    t0 = time.perf_counter()
    for q in queries:
        s = time.perf_counter()
        results.append(search_one(q))
        lat.append(time.perf_counter() - s)
    wall = time.perf_counter() - t0
    lat = np.array(lat) * 1e6
    return results, len(queries) / wall, np.percentile(lat, 50), np.percentile(lat, 95), np.percentile(lat, 99)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--keys", required=True, help="one integer key per base row (stabspace bench --keys-out)")
    ap.add_argument("--dim", type=int)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--efc", type=int, default=200)
    ap.add_argument("--ef", default="32,64,128,256")
    ap.add_argument("--selectivity", default="1,10,50,100")
    ap.add_argument("--threads", type=int, default=1, help="threads for building; queries run one at a time")
    ap.add_argument("--max-queries", type=int, default=1000)
    ap.add_argument("--engines", default="hnswlib,faiss")
    a = ap.parse_args()
    engines = a.engines.split(",")

    base = normalise(load(a.base, a.dim))
    queries = normalise(load(a.queries, a.dim))[: a.max_queries]
    keys = np.loadtxt(a.keys, dtype=np.int64)
    n, dim = base.shape
    if len(keys) != n:
        sys.exit(f"{a.keys}: {len(keys)} keys for {n} base vectors")
    efs = [int(e) for e in a.ef.split(",")]
    sels = [int(s) for s in a.selectivity.split(",")]
    base64 = base.astype(np.float64)

    print(COLUMNS)
    if "hnswlib" in engines:
        run_hnswlib(a, base, base64, queries, keys, efs, sels)
    if "faiss" in engines:
        run_faiss(a, base, base64, queries, keys, efs, sels)


def recall_of(res, queries, kth, kk, base64, keys, cut):
    hits = 0
    for f, q, t in zip(res, queries, kth):
        ids = np.unique(np.asarray(f[:kk], dtype=np.int64))
        ids = ids[ids >= 0]
        ok = keys[ids] < cut
        hits += int(np.count_nonzero((base64[ids] @ q.astype(np.float64) >= t - 1e-6) & ok))
    return hits / (kk * len(queries))


def run_faiss(a, base, base64, queries, keys, efs, sels):
    import faiss
    from threadpoolctl import threadpool_limits

    n, dim = base.shape
    idx = faiss.IndexHNSWFlat(dim, a.M, faiss.METRIC_INNER_PRODUCT)
    idx.hnsw.efConstruction = a.efc
    faiss.omp_set_num_threads(a.threads)
    t = time.perf_counter()
    idx.add(base)
    build_s = time.perf_counter() - t
    faiss.omp_set_num_threads(1)
    print(f"# faiss build {build_s:.1f} s on {a.threads} threads", file=sys.stderr, flush=True)
    with threadpool_limits(1):
        for sel in sels:
            cut = key_cut(keys, sel)
            admitted = np.flatnonzero(keys < cut)
            kth, kk = exact_kth(base64, admitted, queries, a.k)
            bits = np.packbits((keys < cut).astype(np.uint8), bitorder="little")
            selector = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
            for ef in efs:
                params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(ef, a.k))

                def one(q):
                    return idx.search(q.reshape(1, -1), kk, params=params)[1][0]

                res, qps, p50, p95, p99 = timed_queries(one, queries)
                rec = recall_of(res, queries, kth, kk, base64, keys, cut)
                print(f"faiss-hnsw,{n},{dim},{a.k},{a.M},{a.efc},{ef},{rec:.4f},{qps:.1f},{p50:.1f},{p99:.1f},"
                      f"{build_s:.2f},{a.threads},,{p95:.1f},,,{sel}", flush=True)


def run_hnswlib(a, base, base64, queries, keys, efs, sels):
    import hnswlib
    n, dim = base.shape
    idx = hnswlib.Index(space="ip", dim=dim)
    t = time.perf_counter()
    idx.init_index(max_elements=n, M=a.M, ef_construction=a.efc, random_seed=1)
    idx.set_num_threads(a.threads)
    idx.add_items(base, np.arange(n))
    build_s = time.perf_counter() - t
    idx.set_num_threads(1)
    print(f"# hnswlib build {build_s:.1f} s on {a.threads} threads", file=sys.stderr, flush=True)

    key_list = keys.tolist()  # Python ints: the filter indexes a list, not a numpy array
    for sel in sels:
        cut = key_cut(keys, sel)
        admitted = np.flatnonzero(keys < cut)
        kth, kk = exact_kth(base64, admitted, queries, a.k)
        print(f"# {sel}%: key < {cut} admits {len(admitted)} of {n}", file=sys.stderr, flush=True)
        admit = lambda label: key_list[label] < cut
        for ef in efs:
            idx.set_ef(max(ef, a.k))
            failed = 0

            def one(q):
                nonlocal failed
                try:
                    return idx.knn_query(q, k=kk, num_threads=1, filter=admit)[0][0]
                except RuntimeError:
                    failed += 1
                    return np.empty(0, dtype=np.int64)

            res, qps, p50, p95, p99 = timed_queries(one, queries)
            rec = recall_of(res, queries, kth, kk, base64, keys, cut)
            if failed:
                print(f"# {sel}% ef {ef}: {failed} queries returned fewer than {kk}", file=sys.stderr)
            print(f"hnswlib,{n},{dim},{a.k},{a.M},{a.efc},{ef},{rec:.4f},{qps:.1f},{p50:.1f},{p99:.1f},"
                  f"{build_s:.2f},{a.threads},,{p95:.1f},,,{sel}", flush=True)




if __name__ == "__main__":
    main()
