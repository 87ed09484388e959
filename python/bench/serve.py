#!/usr/bin/env python3
"""`stabspace serve` under HTTP/1.1 keep-alive load, next to the same searches in process.

1. Builds a partition of --base (real-return scenario vectors, say) under a
   fresh data directory, or takes --partition.
2. In process: single-thread queries per second of the query set at the breadth
   calibrated for recall 0.95 (`Partition._time_search`: the Rust call, no HTTP).
3. Starts `stabspace serve` on a free loopback port and drives
   `POST /v1/partitions/{model}/{set}/search` with wrk (Debian's `wrk`), one
   query vector per request cycling through the set, from 1, 2 and 8
   connections: queries per second and p50/p99 latency, and per server thread
   the share of the in-process single-thread rate.

    .venv/bin/python python/bench/serve.py --base /tmp/bench-data/scen_100000.f32 \\
        --queries /tmp/bench-data/scen_q_1000.f32 --stabspace target/release/stabspace

The load generator runs on the same machine as the server: on 2 cores, wrk's
own CPU is taken from the server's.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


import stabspace
from search import load, recall  # the sibling benchmark's readers (same folder)

MODEL, SET = "joint-stab-fragility-v1", "BENCH"

LUA = """
local bodies = {}
local i = 0
function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
end
function request()
  i = i % #bodies + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[i])
end
function done(summary, latency, requests)
  io.write(string.format("JSON {\\"requests\\": %d, \\"seconds\\": %f, \\"errors\\": %d, \\"status_errors\\": %d, " ..
    "\\"p50_us\\": %d, \\"p99_us\\": %d}\\n", summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(99)))
end
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--partition", help="an existing partition of --base (default: build one)")
    ap.add_argument("--stabspace", default="target/release/stabspace")
    ap.add_argument("--duration", type=int, default=10, help="seconds per load level")
    ap.add_argument("--clients", default="1,2,8")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    if shutil.which("wrk") is None:
        ap.error("wrk is not installed (apt-get install wrk)")

    queries = load(a.queries, a.dim)
    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    target = work / "index" / MODEL / f"{SET}.stabidx"
    target.parent.mkdir(parents=True)
    if a.partition:
        shutil.copy(a.partition, target)
    else:
        base = load(a.base, a.dim)
        t = time.perf_counter()
        stabspace.build(target, [f"s{i}" for i in range(len(base))], base)
        print(f"built {len(base)} rows in {time.perf_counter() - t:.0f} s")
    p = stabspace.Partition(target)
    ef = p.ef_for(0.95)
    truth = p.search_exact(queries, k=a.k).rows
    got = p.search_batch(queries, k=a.k, ef=ef).rows
    r = recall(got, truth)
    # In process, one thread: the Rust call for each query, best of three passes.
    inproc = min(sum(p._time_search(q, k=a.k, ef=ef, repeat=1) for q in queries) for _ in range(3))
    inproc_qps = len(queries) / inproc
    print(f"{len(p)} rows, ef {ef} (recall@{a.k} {r:.3f}): in process, 1 thread: {inproc_qps:.0f} q/s")

    subprocess.run([a.stabspace, "--data-dir", str(work), "migrate"], check=True, capture_output=True)
    server = subprocess.Popen(
        [a.stabspace, "--data-dir", str(work), "serve", "--addr", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "RUST_LOG": "off"},
    )
    try:
        base_url = re.search(r"listening on (\S+)", server.stdout.readline()).group(1)
        bodies = work / "bodies.jsonl"
        bodies.write_text("".join(json.dumps({"vector": q.tolist(), "k": a.k, "ef": ef}) + "\n" for q in queries))
        script = work / "post.lua"
        script.write_text(LUA)
        url = f"{base_url}/v1/partitions/{MODEL}/{SET}/search"
        threads = os.cpu_count() or 2
        rows = []
        print(f"{'clients':>7} {'q/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'per server thread / in process':>31}")
        for c in [int(x) for x in a.clients.split(",")]:
            out = subprocess.run(
                ["wrk", "-t", str(min(c, threads)), "-c", str(c), "-d", f"{a.duration}s", "-s", str(script),
                 url, "--", str(bodies)],
                check=True, capture_output=True, text=True,
            ).stdout
            r = json.loads(out.split("JSON ", 1)[1].splitlines()[0])
            qps = r["requests"] / r["seconds"]
            per_thread = qps / min(c, threads) / inproc_qps
            rows.append({"clients": c, "qps": qps, "p50_ms": r["p50_us"] / 1e3, "p99_ms": r["p99_us"] / 1e3,
                         "errors": r["errors"] + r["status_errors"], "per_thread_vs_inprocess": per_thread})
            print(f"{c:7} {qps:8.0f} {r['p50_us'] / 1e3:7.2f} {r['p99_us'] / 1e3:7.2f} {per_thread:31.2f}"
                  + (f"  ({rows[-1]['errors']} errors)" if rows[-1]["errors"] else ""))
        result = {"rows": len(p), "ef": ef, "recall": r, "inprocess_qps_1thread": inproc_qps,
                  "server_threads": threads, "load": rows}
        if a.json:
            Path(a.json).write_text(json.dumps(result, indent=2))
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
