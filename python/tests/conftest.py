"""Fixtures shared by the package's tests: the CLI binary, generated vectors,
and demo databases on SQLite and PostgreSQL built by the CLI itself."""

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def stabspace_bin() -> str:
    """The CLI the package is compared with: STABSPACE_BIN, else the checkout's build."""
    explicit = os.environ.get("STABSPACE_BIN")
    if explicit:
        return explicit
    for profile in ("debug", "release"):
        candidate = REPO / "target" / profile / "stabspace"
        if candidate.exists():
            return str(candidate)
    pytest.fail(
        "no stabspace binary: run `cargo build` in the checkout (or set STABSPACE_BIN) "
        "before the Python tests; scripts/test does both"
    )


def run_cli(*args: str, data_dir: Path, database_url: str = None) -> str:
    """Run the CLI, assert it succeeded, return its stdout."""
    cmd = [stabspace_bin(), "--data-dir", str(data_dir)]
    if database_url:
        cmd += ["--database-url", database_url]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "STABSPACE_DATA_DIR")}
    done = subprocess.run(cmd + list(args), capture_output=True, text=True, env=env)
    assert done.returncode == 0, f"{' '.join(cmd + list(args))} failed:\n{done.stderr}"
    return done.stdout


def clustered(n: int, dim: int, seed: int, clusters: int = 40) -> np.ndarray:
    """Vectors around a few dozen centres with uneven spreads: harder for a
    graph than isotropic noise, and non-zero."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    which = rng.integers(0, clusters, size=n)
    spread = rng.uniform(0.2, 1.0, size=(clusters, 1))
    return (centres[which] + spread[which] * rng.normal(size=(n, dim))).astype(np.float32)


def brute_force(base: np.ndarray, queries: np.ndarray, k: int):
    """Exact top-k by cosine in float64: (rows, cosines), best first, ties by row."""
    b = base.astype(np.float64)
    q = np.atleast_2d(queries).astype(np.float64)
    cos = (q @ b.T) / np.outer(np.linalg.norm(q, axis=1), np.linalg.norm(b, axis=1))
    order = np.lexsort((np.broadcast_to(np.arange(len(b)), cos.shape), -cos), axis=1)[:, :k]
    return order, np.take_along_axis(cos, order, axis=1)


def _postgres_database():
    """A fresh database on the test server (name, URL), or why there is none."""
    if shutil.which("psql") is None:
        return "psql is not installed (the tests create their PostgreSQL databases with it)"
    from urllib.parse import urlsplit, urlunsplit

    name = f"stabspace_py_{uuid.uuid4().hex[:12]}"
    url = urlunsplit(urlsplit(PG_URL)._replace(path="/" + name))
    made = subprocess.run(
        ["psql", PG_URL, "-v", "ON_ERROR_STOP=1", "-qc", f'CREATE DATABASE "{name}"'],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        return f"PostgreSQL at {PG_URL} is unreachable ({made.stderr.strip()})"
    return name, url


class Demo:
    """A demo database made by `stabspace demo`, with the ids its queries need."""

    def __init__(self, data_dir: Path, database_url: str = None):
        self.data_dir = data_dir
        self.database_url = database_url
        run_cli("demo", "--instruments", "24", "--days", "320", data_dir=data_dir, database_url=database_url)
        # A set above the flat threshold, so that queries traverse a graph.
        self.graph_set = "GEN_BIG"
        self.cli(
            "gen-scenarios", "--scenario-set-id", self.graph_set, "--count", "4000",
            "--model-id", "joint-stab-fragility-v2",
        )
        status = self.cli("index", "status", "--format", "json")
        import json

        # The flat set: a demo partition without a graph (not the generated one).
        flat = [
            p
            for p in json.loads(status)
            if p.get("vectors") and p["scenario_set_id"] != self.graph_set and p["traversal"] is None
        ]
        assert flat, f"the demo built no flat partition:\n{status}"
        self.model_id = flat[0]["model_id"]
        self.scenario_set_id = flat[0]["scenario_set_id"]

    def cli(self, *args: str) -> str:
        return run_cli(*args, data_dir=self.data_dir, database_url=self.database_url)


@pytest.fixture(autouse=True)
def no_database_environment(monkeypatch):
    """connect() and the CLI fall back to DATABASE_URL and STABSPACE_DATA_DIR:
    the tests pass their database explicitly, whatever the shell has set."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("STABSPACE_DATA_DIR", raising=False)


@pytest.fixture(scope="session")
def demo_sqlite(tmp_path_factory):
    return Demo(tmp_path_factory.mktemp("demo-sqlite"))


@pytest.fixture(scope="session")
def demo_postgres(tmp_path_factory):
    made = _postgres_database()
    if isinstance(made, str):
        message = f"{made}: the PostgreSQL half of the Python tests did not run"
        if os.environ.get("STABSPACE_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        print(f"\n*** {message} ***")
        pytest.skip(message)
    name, url = made
    try:
        yield Demo(tmp_path_factory.mktemp("demo-postgres"), url)
    finally:
        subprocess.run(
            ["psql", PG_URL, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
            capture_output=True,
        )


@pytest.fixture(params=["sqlite", "postgres"])
def demo(request):
    return request.getfixturevalue(f"demo_{request.param}")
