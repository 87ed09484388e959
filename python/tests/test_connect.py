"""stabspace.connect: the query workflows answer as the CLI does on the same
database and partitions, on SQLite and on PostgreSQL."""

import csv
import datetime
import io
import json

import numpy as np
import pandas as pd
import pytest

import stabspace
from conftest import stabspace_bin  # noqa: F401  (fails early without a CLI)

MODEL = "joint-stab-fragility-v2"  # the demo's v2 vectors


def latest_states(demo):
    rows = json.loads(
        demo.cli(
            "show-joint-stab-fragility-states", "--start", "2000-01-01", "--end", "2100-01-01",
            "--model-id", MODEL, "--format", "json",
        )
    )
    day = max(r["as_of_date"] for r in rows)
    return day, sorted(r["instrument_id"] for r in rows if r["as_of_date"] == day)


def first_portfolio(demo):
    with open(demo.data_dir / "demo" / "portfolios.csv", newline="") as f:
        return next(csv.DictReader(f))["portfolio_id"]


def connect(demo):
    return stabspace.connect(database_url=demo.database_url, data_dir=demo.data_dir)


def cli_table(demo, *args):
    """The CLI's CSV header and its JSON rows (full precision) for the same command."""
    header = next(csv.reader(io.StringIO(demo.cli(*args))))
    return header, json.loads(demo.cli(*args, "--format", "json"))


def assert_same(frame, header, rows):
    assert list(frame.columns) == header
    assert len(frame) == len(rows) > 0
    for got, want in zip(frame.to_dict("records"), rows):
        for col in header:
            g, w = got[col], want[col]
            if isinstance(g, datetime.date):
                assert g.isoformat() == w, col
            elif isinstance(g, float):
                assert g == pytest.approx(w, rel=1e-12, abs=1e-12), col
            else:
                assert g == w, col


@pytest.mark.parametrize("which", ["flat", "graph"])
@pytest.mark.parametrize("exact", [False, True])
def test_similar_scenarios_equal_the_cli(demo, which, exact):
    day, instruments = latest_states(demo)
    s = demo.scenario_set_id if which == "flat" else demo.graph_set
    args = ["--instrument-id", instruments[0], "--as-of", day, "--model-id", MODEL, "--scenario-set-id", s, "--top-k", "10"]
    header, rows = cli_table(demo, "find-similar-stab-scenarios", *args, *(["--exact"] if exact else []))
    db = connect(demo)
    got = db.similar_scenarios(instruments[0], day, MODEL, s, 10, exact=exact)
    assert isinstance(got, pd.DataFrame)
    assert_same(got, header, rows)
    # A date object is the same as its string.
    again = db.similar_scenarios(instruments[0], datetime.date.fromisoformat(day), MODEL, s, 10, exact=exact)
    assert again.equals(got)


@pytest.mark.parametrize("which", ["flat", "graph"])
def test_portfolio_exposure_equals_the_cli(demo, which):
    day, _ = latest_states(demo)
    portfolio = first_portfolio(demo)
    s = demo.scenario_set_id if which == "flat" else demo.graph_set
    header, rows = cli_table(
        demo,
        "show-portfolio-stab-scenario-exposure",
        "--portfolio-id", portfolio,
        "--as-of", day,
        "--scenario-set-id", s,
        "--stab-model-id", MODEL,
        "--top-k", "7",
    )
    got = connect(demo).portfolio_exposure(portfolio, day, s, MODEL, 7)
    assert_same(got, header, rows)


def test_graph_queries_traverse_at_the_given_ef_and_read_the_partition_the_cli_built(demo_sqlite):
    demo = demo_sqlite
    day, instruments = latest_states(demo)
    db = connect(demo)
    # ef 1,000 of 4,000 rows: a graph search (an ef of every row would scan instead).
    wide = db.similar_scenarios(instruments[1], day, MODEL, demo.graph_set, 10, ef=1000)
    exact = db.similar_scenarios(instruments[1], day, MODEL, demo.graph_set, 10, exact=True)
    common = set(wide["scenario_id"]) & set(exact["scenario_id"])
    assert len(common) >= 9, "a breadth of 1,000 on 4,000 rows finds the exact top 10"
    by_id = exact.set_index("scenario_id")["cosine"]
    for sid, cos in zip(wide["scenario_id"], wide["cosine"]):
        if sid in common:
            assert cos == pytest.approx(by_id[sid], abs=1e-12)
    p = stabspace.Partition(demo.data_dir / "index" / MODEL / f"{demo.graph_set}.stabidx")
    assert len(p) == 4000 and p.traversal == "int8-per-dimension"
    assert set(exact["scenario_id"]) <= set(p.ids)
    assert p.provenance["scenario_set_id"] == demo.graph_set


def test_bad_requests_raise_value_error_naming_the_problem(demo_sqlite):
    demo = demo_sqlite
    day, instruments = latest_states(demo)
    db = connect(demo)
    with pytest.raises(ValueError, match="top_k must be at least 1"):
        db.similar_scenarios(instruments[0], day, MODEL, demo.scenario_set_id, 0)
    with pytest.raises(ValueError, match="invalid date"):
        db.similar_scenarios(instruments[0], "31/01/2023", MODEL, demo.scenario_set_id)
    with pytest.raises(ValueError, match="invalid date"):
        db.similar_scenarios(instruments[0], day + "5", MODEL, demo.scenario_set_id)
    with pytest.raises(ValueError, match="as_of must be a date"):
        db.similar_scenarios(instruments[0], 20230131, MODEL, demo.scenario_set_id)
    with pytest.raises(ValueError, match="scenario_set_id is required"):
        db.similar_scenarios(instruments[0], day)
    with pytest.raises(ValueError, match="without ef or recall"):
        db.similar_scenarios(instruments[0], day, MODEL, demo.scenario_set_id, exact=True, ef=10)
    with pytest.raises(ValueError, match="NOPE.US"):
        db.similar_scenarios("NOPE.US", day, MODEL, demo.scenario_set_id)
    with pytest.raises(ValueError, match="NO_SUCH_SET"):
        db.similar_scenarios(instruments[0], day, MODEL, "NO_SUCH_SET")
    with pytest.raises(ValueError, match="min_coverage"):
        db.portfolio_exposure(first_portfolio(demo), day, demo.scenario_set_id, min_coverage=2.0)


def test_connect_to_a_missing_database_raises_database_error(tmp_path):
    with pytest.raises(stabspace.DatabaseError, match="no database at"):
        stabspace.connect(data_dir=tmp_path / "nothing-here")
    with pytest.raises(stabspace.DatabaseError, match="cannot connect"):
        stabspace.connect(database_url="postgres://postgres@127.0.0.1:1/none")
    with pytest.raises(ValueError, match="unsupported database URL"):
        stabspace.connect(database_url="mysql://x/y")


def test_without_pandas_rows_are_dicts_with_the_csv_columns(demo_sqlite, monkeypatch):
    import builtins
    import sys

    demo = demo_sqlite
    day, instruments = latest_states(demo)
    real_import = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("pandas hidden by the test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    monkeypatch.delitem(sys.modules, "pandas")
    rows = connect(demo).similar_scenarios(instruments[0], day, MODEL, demo.scenario_set_id, 3)
    assert isinstance(rows, list) and len(rows) == 3
    header, _ = cli_table(
        demo,
        "find-similar-stab-scenarios",
        "--instrument-id", instruments[0],
        "--as-of", day,
        "--scenario-set-id", demo.scenario_set_id,
        "--top-k", "3",
        "--model-id", MODEL,
    )
    assert list(rows[0].keys()) == header


def test_a_partition_behind_the_database_answers_with_its_delta_and_says_so(demo):
    """A set that gained rows since its partition was built: the connection's
    frames, like the CLI, answer for the set as stored (the partition and an
    exact scan of the rows it lacks) and say so in answered_by / partition_stale."""
    day, instruments = latest_states(demo)
    s = "GEN_STALE"
    demo.cli("gen-scenarios", "--scenario-set-id", s, "--count", "2100", "--model-id", MODEL)
    db = connect(demo)
    fresh = db.similar_scenarios(instruments[0], day, MODEL, s, 10)
    assert set(fresh["answered_by"]) == {"index"} and not fresh["partition_stale"].any()
    demo.cli("gen-scenarios", "--scenario-set-id", s, "--count", "2160", "--model-id", MODEL, "--no-index")
    args = ["--instrument-id", instruments[0], "--as-of", day, "--model-id", MODEL, "--scenario-set-id", s, "--top-k", "10"]
    header, rows = cli_table(demo, "find-similar-stab-scenarios", *args)
    got = db.similar_scenarios(instruments[0], day, MODEL, s, 10)
    assert_same(got, header, rows)
    assert set(got["answered_by"]) == {"index+delta"} and got["partition_stale"].all()
    exact = db.similar_scenarios(instruments[0], day, MODEL, s, 10, exact=True)
    assert set(exact["answered_by"]) == {"exact-scan"} and not exact["partition_stale"].any()
    assert list(got["scenario_id"]) == list(exact["scenario_id"])
    # A partition file on its own knows no database: how, but not whether stale.
    p = stabspace.Partition(demo.data_dir / "index" / MODEL / f"{s}.stabidx")
    q = np.ones(p.dim, dtype=np.float32)
    assert p.search(q, 3).answered_by == "index"
    assert p.search_exact(q, 3).answered_by == "exact-scan"
    assert p.search(q, 3).partition_stale is None
    demo.cli("index", "rebuild")
    again = db.similar_scenarios(instruments[0], day, MODEL, s, 10)
    assert set(again["answered_by"]) == {"index"} and not again["partition_stale"].any()
