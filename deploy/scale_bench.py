#!/usr/bin/env python3
"""The scale-out benchmark: query nodes behind HAProxy, partitions in object storage.

On one machine, with real parts: moto's S3 server as the object store, a
fresh PostgreSQL database, N `stabspace serve` nodes with empty data
directories and their own caches (each budget a share of the partitions'
total, so no node can hold every set), and HAProxy with deploy/haproxy.cfg
(consistent hashing on the set) in front of them. It reports:

- publish: building and publishing each set (upload + manifest commit);
- cold fetch: the first request of each set through the proxy (its owner
  node downloads and verifies the partition);
- load: throughput, p50 and p99 of searches of random sets from several
  client threads, failed requests;
- per node: cache hits, fetches, evictions, cached bytes, hit rate;
- publish to serve: rows appended to one set, `index rebuild` publishes the
  append, and the time until its owner node answers from the new version.

Usage (defaults: 3 nodes, 12 sets of 100,000 rows, budget 40% of the total):

    cargo build --release
    python3 deploy/scale_bench.py [--sets 12] [--rows 100000] [--nodes 3] [--seconds 30]

Needs: target/release/stabspace (or --bin), moto_server (STABSPACE_MOTO_SERVER
or PATH: `pip install 'moto[server]'`), haproxy, psql, and PostgreSQL at
TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
Everything binds to loopback; everything it starts is stopped at the end.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[1]
MODEL = "joint-stab-fragility-v2"
BUCKET = "stabspace-scale"
KEY = "scale-bench-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, what: str, seconds: float = 30):
    until = time.time() + seconds
    while time.time() < until:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:
            time.sleep(0.1)
    sys.exit(f"{what} never answered at {url}")


class Bench:
    def __init__(self, a):
        self.a = a
        self.procs = []
        self.tmp = Path(tempfile.mkdtemp(prefix="stabspace-scale-"))
        self.bin = a.bin
        admin = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
        self.db_name = f"stabspace_scale_{os.getpid()}"
        self.admin = admin
        self.db = urlunsplit(urlsplit(admin)._replace(path="/" + self.db_name))

    def start(self, args, env=None, log=None):
        out = open(log, "w") if log else subprocess.DEVNULL
        p = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()
        subprocess.run(["psql", self.admin, "-qc", f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'],
                       capture_output=True)
        if not self.a.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def env(self, **extra):
        e = dict(os.environ)
        e.update(
            AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1",
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{self.moto_port}", AWS_ALLOW_HTTP="true",
            STABSPACE_PARTITION_STORE=f"s3://{BUCKET}/scale", DATABASE_URL=self.db,
            STABSPACE_DATA_DIR=str(self.tmp / "builder"),
        )
        e.pop("STABSPACE_READ_DATABASE_URL", None)
        e.update(extra)
        return e

    def cli(self, *args) -> str:
        done = subprocess.run([self.bin, *args], env=self.env(), capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"stabspace {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def setup(self):
        made = subprocess.run(["psql", self.admin, "-v", "ON_ERROR_STOP=1", "-qc",
                               f'CREATE DATABASE "{self.db_name}"'], capture_output=True, text=True)
        if made.returncode != 0:
            sys.exit(f"cannot create the database: {made.stderr}")
        moto = os.environ.get("STABSPACE_MOTO_SERVER") or shutil.which("moto_server")
        if not moto:
            sys.exit("moto_server not found: pip install 'moto[server]' (or set STABSPACE_MOTO_SERVER)")
        self.moto_port = free_port()
        self.start([moto, "-H", "127.0.0.1", "-p", str(self.moto_port)], log=self.tmp / "moto.log")
        until = time.time() + 30
        while True:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{self.moto_port}/{BUCKET}", method="PUT")
                urllib.request.urlopen(req, timeout=2)
                break
            except Exception:
                if time.time() > until:
                    sys.exit("moto_server never answered")
                time.sleep(0.2)

    def publish(self):
        self.sets = [f"SCALE_{i:02d}" for i in range(self.a.sets)]
        times = []
        for i, s in enumerate(self.sets):
            t = time.time()
            self.cli("gen-scenarios", "--scenario-set-id", s, "--count", str(self.a.rows),
                     "--model-id", MODEL, "--seed", str(1000 + i))
            times.append(time.time() - t)
            print(f"  published {s}: {self.a.rows} rows, {times[-1]:.1f} s (generate, build, upload, commit)",
                  flush=True)
        versions = json.loads(self.cli("index", "status", "--versions", "--format", "json"))
        self.total_bytes = sum(v["size_mb"] * 1e6 for v in versions if v["current"])
        return times

    def start_nodes(self):
        keys = self.tmp / "keys"
        keys.write_text(KEY + "\n")
        budget_gb = self.a.budget_share * self.total_bytes / 1e9
        self.budget = budget_gb * 1e9
        self.nodes = []
        for n in range(self.a.nodes):
            port = free_port()
            data = self.tmp / f"node{n + 1}" / "data"
            data.mkdir(parents=True)
            cache = self.tmp / f"node{n + 1}" / "cache"
            self.start(
                [self.bin, "serve", "--addr", f"127.0.0.1:{port}", "--cache-dir", str(cache),
                 "--cache-max-gb", f"{budget_gb:.6f}", "--refresh-secs", str(self.a.refresh_secs),
                 "--api-key-file", str(keys)],
                env=self.env(STABSPACE_DATA_DIR=str(data)),
                log=self.tmp / f"node{n + 1}.log",
            )
            self.nodes.append((port, cache))
        for port, _ in self.nodes:
            wait_http(f"http://127.0.0.1:{port}/healthz", "a node")
        cfg = (REPO / "deploy" / "haproxy.cfg").read_text()
        extra = "".join(
            f'    server node{n} "${{STABSPACE_NODE{n}-127.0.0.1:{7877 + n}}}" id {n}\n'
            for n in range(3, self.a.nodes + 1)
        )
        # A cold fetch of a large partition from a local moto can outlast the
        # shipped 35 s server timeout, meant for queries on warm nodes.
        cfg = cfg.replace("timeout server 35s", "timeout server 300s")
        lines = [l for l in cfg.splitlines(keepends=True) if "# server node3" not in l]
        at = max(i for i, l in enumerate(lines) if l.strip().startswith("server node2"))
        lines.insert(at + 1, extra)
        (self.tmp / "haproxy.cfg").write_text("".join(lines))
        self.proxy_port = free_port()
        env = dict(os.environ, STABSPACE_LISTEN=f"127.0.0.1:{self.proxy_port}")
        for n, (port, _) in enumerate(self.nodes, 1):
            env[f"STABSPACE_NODE{n}"] = f"127.0.0.1:{port}"
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        self.start([haproxy, "-db", "-f", str(self.tmp / "haproxy.cfg")], env=env, log=self.tmp / "haproxy.log")
        wait_http(f"http://127.0.0.1:{self.proxy_port}/healthz", "haproxy")

    def search(self, conn, port_or_conn_set, vector, k=10):
        body = json.dumps({"vector": vector, "k": k})
        conn.request("POST", f"/v1/partitions/{MODEL}/{port_or_conn_set}/search", body,
                     {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")

    def cold(self, vectors):
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=120)
        out = []
        for s in self.sets:
            t = time.time()
            status, got = self.search(conn, s, vectors[0])
            out.append(time.time() - t)
            if status != 200:
                sys.exit(f"cold request of {s}: {status} {got}")
        return out

    def load(self, vectors):
        stop = time.time() + self.a.seconds
        lat, failed, lock = [], [], threading.Lock()

        def client(seed):
            rnd = random.Random(seed)
            conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=120)
            mine, bad = [], []
            while time.time() < stop:
                s = rnd.choice(self.sets)
                t = time.time()
                try:
                    status, got = self.search(conn, s, rnd.choice(vectors))
                except Exception as e:  # a dropped connection counts as a failure
                    status, got = 0, str(e)
                    conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=120)
                (mine if status == 200 else bad).append(time.time() - t if status == 200 else f"{status} {got}")
            with lock:
                lat.extend(mine)
                failed.extend(bad)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(self.a.clients)]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return lat, failed, time.time() - t0

    def metrics(self, port):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                     headers={"Authorization": f"Bearer {KEY}"})
        text = urllib.request.urlopen(req, timeout=10).read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith("stabspace_") and " " in line and "{" not in line:
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def publish_to_serve(self, vectors):
        s = self.sets[0]
        versions = json.loads(self.cli("index", "status", "--versions", "--format", "json"))
        sha = next(v["sha256"] for v in versions if v["scenario_set_id"] == s and v["current"])
        owners = [(p, c) for p, c in self.nodes if (c / "objects" / f"{sha}.stabidx").exists()]
        if not owners:
            sys.exit(f"no node holds {s}'s current version: nothing to measure publish-to-serve on")
        self.cli("gen-scenarios", "--scenario-set-id", s, "--count", str(self.a.rows + self.a.append),
                 "--model-id", MODEL, "--seed", "1000", "--no-index")
        t = time.time()
        out = self.cli("index", "rebuild")
        build = time.time() - t
        # From the commit: the manifest row's publish time (this machine's clock).
        versions = json.loads(self.cli("index", "status", "--versions", "--format", "json"))
        row = next(v for v in versions if v["scenario_set_id"] == s and v["current"])
        from datetime import datetime

        committed = datetime.fromisoformat(row["published_at"].replace("Z", "+00:00")).timestamp()
        waits = []
        for port, _ in owners:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            while True:
                status, got = self.search(conn, s, vectors[0])
                if status == 200 and got.get("answered_by") == "index" and not got.get("partition_stale"):
                    waits.append(time.time() - committed)
                    break
                if time.time() - committed > 120:
                    sys.exit(f"node {port} never served the new version of {s}")
                time.sleep(0.02)
        return build, waits, len(owners), out


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", default=str(REPO / "target" / "release" / "stabspace"))
    p.add_argument("--sets", type=int, default=12)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--budget-share", type=float, default=0.4,
                   help="each node's --cache-max-gb as a share of all partitions' bytes (below 1)")
    p.add_argument("--refresh-secs", type=float, default=2)
    p.add_argument("--append", type=int, default=1000, help="rows appended for publish-to-serve")
    p.add_argument("--keep", action="store_true", help="keep the working directory (logs)")
    a = p.parse_args()
    if a.nodes < 2 or not 0 < a.budget_share < 1:
        p.error("--nodes must be at least 2 and --budget-share between 0 and 1")
    b = Bench(a)
    try:
        b.setup()
        print(f"publishing {a.sets} sets of {a.rows} rows to moto (s3://{BUCKET}/scale)", flush=True)
        times = b.publish()
        b.start_nodes()
        rnd = random.Random(7)
        vectors = [[rnd.gauss(0, 1) for _ in range(384)] for _ in range(64)]
        cold = b.cold(vectors)
        lat, failed, secs = b.load(vectors)
        nodes = [b.metrics(port) for port, _ in b.nodes]
        build, waits, owners, _ = b.publish_to_serve(vectors)
        print()
        print(f"partitions: {a.sets} x {a.rows} rows = {b.total_bytes / 1e9:.2f} GB; "
              f"node cache budget {b.budget / 1e9:.2f} GB ({a.budget_share:.0%} of it), {a.nodes} nodes")
        print(f"publish per set (generate + build + upload + commit): median {statistics.median(times):.1f} s")
        print(f"cold first request per set through the proxy: median {statistics.median(cold) * 1e3:.0f} ms, "
              f"max {max(cold) * 1e3:.0f} ms")
        print(f"load: {a.clients} clients, {secs:.0f} s: {len(lat) / secs:.0f} searches/s, "
              f"p50 {pct(lat, 0.5) * 1e3:.2f} ms, p99 {pct(lat, 0.99) * 1e3:.2f} ms, {len(failed)} failed"
              + (f" (first: {failed[0]})" if failed else ""))
        for n, m in enumerate(nodes, 1):
            hits = m.get("stabspace_partition_cache_hits_total", 0)
            fetches = m.get("stabspace_partition_fetches_total", 0)
            print(f"  node{n}: cache {m.get('stabspace_partition_cache_bytes', 0) / 1e9:.2f} GB, "
                  f"hits {hits:.0f}, fetches {fetches:.0f}, evictions "
                  f"{m.get('stabspace_partition_cache_evictions_total', 0):.0f}, "
                  f"hit rate {hits / max(1, hits + fetches):.3f}, last fetch "
                  f"{m.get('stabspace_partition_last_fetch_seconds', 0) * 1e3:.0f} ms")
        print(f"publish to serve: append of {a.append} rows rebuilt and published in {build:.1f} s; "
              f"served by its {owners} owner node(s) {', '.join(f'{w:.2f} s' for w in waits)} after the "
              f"commit (--refresh-secs {a.refresh_secs})")
        if failed:
            sys.exit(1)
    finally:
        b.stop()


if __name__ == "__main__":
    main()
