"""Point-in-time search from Python: Partition.search(known_before=...),
search_batch with one date per query, and the workflow calls with
point_in_time=True, checked against exact rankings and the CLI."""

import datetime
import json

import numpy as np
import pytest

import stabspace
from test_connect import MODEL, assert_same, cli_table, connect, latest_states

SET = "GEN_PIT"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def pit(request):
    """A demo database with a generated set whose known-from dates span 20 years."""
    demo = request.getfixturevalue(f"demo_{request.param}")
    demo.cli(
        "gen-scenarios", "--scenario-set-id", SET, "--count", "3000", "--model-id", MODEL,
        "--spread-years", "20",
    )
    rows = json.loads(
        demo.cli(
            "show-joint-stab-fragility-scenarios", "--scenario-set-id", SET, "--model-id", MODEL,
            "--format", "json",
        )
    )
    known = {r["scenario_id"]: datetime.date.fromisoformat(r["known_from"]) for r in rows}
    part = stabspace.Partition(connect(demo).index_dir / MODEL / f"{SET}.stabidx")
    return demo, part, known


def exact_admitted(part, q, known, before, k):
    """The exact ranking of every row, restricted to rows known before `before`."""
    every = part.search_exact(q, k=len(part))
    return [i for i in every.ids if known[i] < before][:k]


def test_known_before_returns_only_rows_known_before_it_at_the_unfiltered_recall(pit):
    """Random queries lie off the rows' distribution, where the graph's own
    recall is below its calibration (#27): the filtered search is held to
    what the unfiltered search reaches on the same queries, and to 0.95 where
    few rows are admitted (their codes are scanned)."""
    _, part, known = pit
    assert len(part) > 2000 and part.traversal is not None, "a graph partition"
    rng = np.random.default_rng(5)
    queries = rng.normal(size=(12, part.dim)).astype(np.float32)
    plain = sum(
        len(set(part.search(q, k=10).ids) & set(part.search_exact(q, k=10).ids)) for q in queries
    ) / (10 * len(queries))
    dates = sorted(known.values())
    for share in (0.01, 0.1, 0.5, 1.0):
        before = dates[int(len(dates) * share)] if share < 1 else dates[-1] + datetime.timedelta(days=1)
        admitted = sum(1 for d in known.values() if d < before)
        found = wanted = 0
        for q in queries:
            hits = part.search(q, k=10, known_before=before)
            assert hits.admitted == admitted
            assert all(known[i] < before for i in hits.ids)
            want = exact_admitted(part, q, known, before, 10)
            exact = part.search(q, k=10, ef=len(part), known_before=before.isoformat())
            assert list(exact.ids) == want, share
            found += len(set(hits.ids) & set(want))
            wanted += len(want)
        floor = 0.95 if share <= 0.1 else plain - 0.05
        assert found / wanted >= floor, (share, found / wanted, plain)


def test_search_batch_takes_one_date_per_query_and_says_how_many_each_admitted(pit):
    _, part, known = pit
    rng = np.random.default_rng(9)
    Q = rng.normal(size=(3, part.dim)).astype(np.float32)
    days = [datetime.date(2008, 1, 1), datetime.date(2015, 6, 30), datetime.date(1990, 1, 1)]
    hits = part.search_batch(Q, k=5, known_before=days)
    assert list(hits.admitted) == [sum(1 for d in known.values() if d < day) for day in days]
    for row, day in zip(hits.ids, days):
        assert all(i is None or known[i] < day for i in row)
    assert hits.ids[2] == [None] * 5, "nothing known before 1990: an empty row"
    one = part.search_batch(Q, k=5, known_before="2008-01-01")
    assert list(one.admitted) == [hits.admitted[0]] * 3
    with pytest.raises(ValueError, match="known_before has 2 dates for 3 queries"):
        part.search_batch(Q, k=5, known_before=days[:2])
    with pytest.raises(ValueError, match="known_before"):
        part.search(Q[0], known_before="2008-02-30")
    with pytest.raises(ValueError, match="not a severity"):
        part.search(Q[0], min_severity="huge")
    typed = part.search(Q[0], k=5, shock_type="synthetic", min_severity="HIGH")
    assert 0 < typed.admitted < len(part)
    assert part.search(Q[0], k=5).admitted is None, "unfiltered searches report no count"


def test_point_in_time_workflow_calls_equal_the_cli(pit):
    demo, _, _ = pit
    day, instruments = latest_states(demo)
    args = [
        "--instrument-id", instruments[0], "--as-of", day, "--model-id", MODEL,
        "--scenario-set-id", SET, "--top-k", "10", "--point-in-time",
    ]
    header, rows = cli_table(demo, "find-similar-stab-scenarios", *args)
    assert header[-1] == "scenario_known_from"
    got = connect(demo).similar_scenarios(instruments[0], day, MODEL, SET, 10, point_in_time=True)
    assert_same(got, header, rows)
    assert all(r["scenario_known_from"] < day for r in rows)
    with pytest.raises(ValueError, match="not both"):
        connect(demo).similar_scenarios(
            instruments[0], day, MODEL, SET, 10, point_in_time=True, known_before="2010-01-01"
        )
    with pytest.raises(ValueError, match="none of its"):
        connect(demo).similar_scenarios(instruments[0], day, MODEL, SET, 10, known_before="1990-01-01")
