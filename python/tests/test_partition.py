"""stabspace.Partition and stabspace.build on real files: exact answers
against numpy, graph recall against brute force, bad input, damaged files,
and a file replaced while it is open."""

import sys
import threading

import numpy as np
import pytest

import stabspace
from conftest import brute_force, clustered

DIM = 48


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """A 6,000-row partition (above the flat threshold: it has a graph) and held-out queries."""
    path = tmp_path_factory.mktemp("graph") / "g.stabidx"
    # Held-out queries from the same distribution as the rows (the calibration's premise).
    both = clustered(6200, DIM, seed=1)
    data, queries = both[:6000], both[6000:]
    ids = [f"row-{i}" for i in range(len(data))]
    stats = stabspace.build(path, ids, data, provenance={"source": "test", "n": 6000})
    return path, data, ids, queries, stats


def test_build_writes_a_partition_that_opens_with_its_rows_ids_provenance_and_checksums(graph):
    path, data, ids, _, stats = graph
    assert stats["rows"] == 6000 and stats["graph"] and stats["dim"] == DIM
    assert stats["calibration"], "a graph build records its recall calibration"
    p = stabspace.Partition(path)
    assert len(p) == 6000
    assert p.dim == DIM
    assert p.ids == ids
    assert p.provenance == {"source": "test", "n": 6000}
    assert p.traversal == "int8-per-dimension"
    assert p.info["rows"] == 6000 and p.info["graph"] is True
    p.verify()


def test_exact_search_equals_a_numpy_brute_force(graph):
    path, data, ids, queries, _ = graph
    p = stabspace.Partition(path)
    want_rows, want_cos = brute_force(data, queries, 10)
    got = p.search_exact(queries, k=10)
    assert got.cosine.shape == (200, 10) and got.ef is None
    np.testing.assert_array_equal(got.rows, want_rows)
    # Rows are stored as normalised float32: cosines agree to float32 precision.
    np.testing.assert_allclose(got.cosine, want_cos, rtol=0, atol=1e-6)
    assert got.ids[0] == [ids[r] for r in want_rows[0]]
    # Euclidean distances on the vectors as given.
    want_euc = np.linalg.norm(data[want_rows[7]].astype(np.float64) - queries[7].astype(np.float64), axis=1)
    np.testing.assert_allclose(got.euclidean[7], want_euc, rtol=1e-6)
    # One vector: 1-D arrays, the same answer.
    one = p.search_exact(queries[7], k=10)
    assert one.cosine.shape == (10,) and len(one) == 1
    np.testing.assert_array_equal(one.rows, want_rows[7])
    assert one.ids == [ids[r] for r in want_rows[7]]


def test_graph_search_at_the_default_breadth_has_recall_near_its_calibration_against_brute_force(graph):
    path, data, _, queries, _ = graph
    p = stabspace.Partition(path)
    want_rows, _ = brute_force(data, queries, 10)
    got = p.search_batch(queries, k=10)  # the breadth calibrated for recall 0.95
    assert got.ef == p.ef_for(0.95)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got.rows, want_rows)])
    # Calibrated for 0.95 on held-out rows; 200 other queries measure it within sampling error.
    assert recall >= 0.92, f"recall@10 {recall:.3f} at the breadth calibrated for 0.95"
    # Exact re-rank: every reported cosine is the true cosine of its row.
    b = data.astype(np.float64)
    true = np.einsum("ij,ij->i", b[got.rows[3]], np.broadcast_to(queries[3], (10, DIM))) / (
        np.linalg.norm(b[got.rows[3]], axis=1) * np.linalg.norm(queries[3].astype(np.float64))
    )
    np.testing.assert_allclose(got.cosine[3], true, atol=1e-6)
    # A batch answers as one query at a time does.
    for i in (0, 50, 199):
        one = p.search(queries[i], k=10)
        np.testing.assert_array_equal(one.rows, got.rows[i])
        assert one.ids == got.ids[i]


def test_explicit_ef_and_recall_choose_the_breadth_and_f32_traversal_finds_the_same_cosines(graph):
    path, _, _, queries, _ = graph
    p = stabspace.Partition(path)
    assert p.search(queries[0], k=5, ef=300).ef == 300
    assert p.search(queries[0], k=5, recall=0.99).ef == p.ef_for(0.99)
    assert p.search(queries[0], k=5, ef=6000).ef is None  # a breadth of every row is a scan
    f32 = stabspace.Partition(path, quantized=False)
    assert f32.traversal == "f32"
    a, b = p.search(queries[1], k=10, ef=400), f32.search(queries[1], k=10, ef=400)
    common = set(a.rows) & set(b.rows)
    assert len(common) >= 8
    for r in common:
        np.testing.assert_allclose(a.cosine[list(a.rows).index(r)], b.cosine[list(b.rows).index(r)], atol=1e-12)


def test_float64_lists_and_strided_arrays_answer_as_contiguous_float32(graph):
    path, _, _, queries, _ = graph
    p = stabspace.Partition(path)
    base = p.search_batch(np.ascontiguousarray(queries[::2]), k=10, ef=100)
    strided = p.search_batch(queries[::2], k=10, ef=100)  # a view with a row stride of 2
    assert not queries[::2].flags.c_contiguous
    as_f64 = p.search_batch(queries[::2].astype(np.float64), k=10, ef=100)
    np.testing.assert_array_equal(strided.rows, base.rows)
    np.testing.assert_array_equal(as_f64.rows, base.rows)
    from_list = p.search(queries[0].tolist(), k=10, ef=100)
    np.testing.assert_array_equal(from_list.rows, base.rows[0])
    fortran = np.asfortranarray(queries[:20])
    np.testing.assert_array_equal(p.search_batch(fortran, k=10, ef=100).rows, p.search_batch(queries[:20], k=10, ef=100).rows)


def test_unaligned_big_endian_reversed_and_half_precision_inputs_are_read_correctly(graph):
    path, _, _, queries, _ = graph
    p = stabspace.Partition(path)
    want = p.search_batch(queries[:8], k=10, ef=100).rows
    q = queries[:8]
    # Unaligned: float32 rows starting one byte into a buffer.
    unaligned = np.frombuffer(b"\0" + q.tobytes(), dtype=np.float32, offset=1).reshape(q.shape)
    assert not unaligned.flags.aligned
    np.testing.assert_array_equal(p.search_batch(unaligned, k=10, ef=100).rows, want)
    # Rows inside a packed record: a row stride that is not a multiple of 4 bytes.
    rec = np.zeros(8, dtype=[("tag", "u1"), ("v", "<f4", (DIM,))])
    rec["v"] = q
    np.testing.assert_array_equal(p.search_batch(rec["v"], k=10, ef=100).rows, want)
    # Big-endian, reversed rows, half precision.
    np.testing.assert_array_equal(p.search_batch(q.astype(">f4"), k=10, ef=100).rows, want)
    np.testing.assert_array_equal(p.search_batch(q[::-1], k=10, ef=100).rows, want[::-1])
    half = p.search_batch(q.astype(np.float16), k=10, ef=100).rows
    assert half.shape == (8, 10)
    # A list of ints is a vector of numbers.
    ints = np.rint(q[0] * 100).astype(int).tolist()
    np.testing.assert_array_equal(
        p.search(ints, k=10, ef=100).rows, p.search(np.array(ints, dtype=np.float32), k=10, ef=100).rows
    )


def test_k_above_the_row_count_lists_every_row_and_an_empty_batch_answers_empty(tmp_path):
    data = clustered(30, 8, seed=3)
    path = tmp_path / "small.stabidx"
    stabspace.build(path, [str(i) for i in range(30)], data)
    p = stabspace.Partition(path)
    assert p.traversal is None  # flat: 30 rows are scanned exactly
    hits = p.search(data[4], k=100)
    assert hits.ef is None and len(hits.ids) == 30 and hits.ids[0] == "4"
    assert sorted(hits.rows.tolist()) == list(range(30))
    empty = p.search_batch(np.zeros((0, 8), dtype=np.float32), k=5)
    assert empty.cosine.shape == (0, 5) and empty.ids == []


BAD_QUERIES = [
    ("integers", lambda q: q.astype(np.int64), "dtype int64; expected float32 or float64"),
    ("a matrix to search", lambda q: np.stack([q, q]), "must be a 1-D array"),
    ("too few components", lambda q: q[:-1], f"has {DIM - 1} components per vector"),
    ("NaN", lambda q: np.where(np.arange(DIM) == 5, np.nan, q).astype(np.float32), "component 5 is NaN"),
    ("infinity", lambda q: np.where(np.arange(DIM) == 2, np.inf, q).astype(np.float32), "component 2 is inf"),
    ("all zeros", lambda q: np.zeros_like(q), "is all zeros"),
    ("beyond float32", lambda q: np.where(np.arange(DIM) == 1, 1e300, q.astype(np.float64)), "beyond float32's range"),
    ("strings", lambda q: np.array(["a"] * DIM), "expected float32 or float64"),
    ("a list of strings", lambda q: ["a"] * DIM, "not an array of numbers"),
]


@pytest.mark.parametrize("what,make,message", BAD_QUERIES, ids=[b[0] for b in BAD_QUERIES])
def test_a_bad_query_vector_raises_value_error_saying_what_is_wrong(graph, what, make, message):
    path, _, _, queries, _ = graph
    p = stabspace.Partition(path)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        p.search(make(queries[0]), k=10)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"k": 0}, "k must be at least 1, got 0"),
        ({"k": -3}, "k must be at least 1, got -3"),
        ({"ef": 0}, "ef must be at least 1"),
        ({"recall": 1.5}, "recall must be between 0"),
        ({"recall": 0.0}, "recall must be between 0"),
        ({"ef": 50, "recall": 0.9}, "give ef or recall, not both"),
    ],
)
def test_bad_k_ef_or_recall_raises_value_error(graph, kwargs, message):
    path, _, _, queries, _ = graph
    p = stabspace.Partition(path)
    with pytest.raises(ValueError, match=message):
        p.search(queries[0], **kwargs)
    with pytest.raises(ValueError, match=message):
        p.search_batch(queries[:3], **kwargs)


def test_a_bad_row_of_a_batch_is_named_by_its_index(graph):
    path, _, _, queries, _ = graph
    p = stabspace.Partition(path)
    q = queries[:10].copy()
    q[7, 3] = np.nan
    with pytest.raises(ValueError, match=r"Q\[7\]: component 3 is NaN"):
        p.search_batch(q)
    q[7] = 0
    with pytest.raises(ValueError, match=r"Q\[7\]: is all zeros"):
        p.search_batch(q)
    with pytest.raises(ValueError, match="must be a 2-D array"):
        p.search_batch(queries[0])
    with pytest.raises(ValueError, match="must be a 1-D array"):
        p.search_exact(queries[None, None, :2])


def test_bad_build_input_raises_value_error_and_writes_nothing(tmp_path):
    path = tmp_path / "x.stabidx"
    data = clustered(20, 4, seed=5)
    ids = [str(i) for i in range(20)]
    cases = [
        (ids[:-1], data, "19 ids for 20 vectors"),
        (ids[:-1] + ["3"], data, r"ids\[19\] \"3\" repeats ids\[3\]"),
        (ids, np.where(np.arange(4) == 1, np.nan, data).astype(np.float32), r"vectors\[0\]: component 1 is NaN"),
        (ids, np.vstack([data[:-1], np.zeros((1, 4), np.float32)]), r"vectors\[19\]: is all zeros"),
        (ids, data.astype(np.int32), "dtype int32"),
        (ids, data[0], "must be a 2-D array"),
    ]
    for i, v, message in cases:
        with pytest.raises(ValueError, match=message):
            stabspace.build(path, i, v)
    with pytest.raises(ValueError, match="M = 1 is not between 2"):
        stabspace.build(path, ids, data, m=1)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_missing_truncated_or_damaged_file_raises_and_never_crashes(graph, tmp_path):
    path, _, _, queries, _ = graph
    whole = path.read_bytes()
    with pytest.raises(FileNotFoundError):
        stabspace.Partition(tmp_path / "missing.stabidx")
    for cut in (0, 10, 200, len(whole) // 2, len(whole) - 1):
        bad = tmp_path / f"cut-{cut}.stabidx"
        bad.write_bytes(whole[:cut])
        with pytest.raises(stabspace.IndexError, match=str(bad)):
            stabspace.Partition(bad)
    junk = tmp_path / "junk.stabidx"
    junk.write_bytes(b"not an index at all" * 100)
    with pytest.raises(stabspace.IndexError, match="not a stabspace index"):
        stabspace.Partition(junk)
    # A flipped byte in the middle: open is O(1), verify() reads every checksum.
    flipped = bytearray(whole)
    flipped[len(whole) // 3] ^= 0xFF
    damaged = tmp_path / "flipped.stabidx"
    damaged.write_bytes(bytes(flipped))
    p = stabspace.Partition(damaged)
    with pytest.raises(stabspace.IndexError, match="corrupt"):
        p.verify()
    assert issubclass(stabspace.IndexError, stabspace.Error)
    # Bytes flipped all over the file: every search answers or raises stabspace.IndexError.
    rng = np.random.default_rng(9)
    for trial in range(20):
        broken = bytearray(whole)
        for at in rng.integers(4096, len(whole), size=64):
            broken[at] ^= 0xFF
        target = tmp_path / f"broken-{trial}.stabidx"
        target.write_bytes(bytes(broken))
        try:
            q = stabspace.Partition(target)
            q.search_batch(queries[:20], k=10, ef=64)
            q.search_exact(queries[:5], k=10)
        except stabspace.IndexError:
            pass


def test_a_partition_replaced_while_open_keeps_answering_from_the_old_map(tmp_path):
    path = tmp_path / "swap.stabidx"
    old = clustered(3000, 16, seed=6)
    new = clustered(3000, 16, seed=7)
    stabspace.build(path, [f"old-{i}" for i in range(3000)], old)
    p = stabspace.Partition(path)
    before = p.search(old[10], k=5)
    stabspace.build(path, [f"new-{i}" for i in range(3000)], new)  # renamed over the open file
    after = p.search(old[10], k=5)
    assert after.ids == before.ids and after.ids[0] == "old-10"
    assert p.ids[0] == "old-0"
    p.verify()
    fresh = stabspace.Partition(path)
    assert fresh.search(new[10], k=5).ids[0] == "new-10"


def test_searches_from_several_threads_agree_with_one_thread(graph):
    path, _, _, queries, _ = graph
    p = stabspace.Partition(path)
    want = p.search_batch(queries, k=10, ef=80).rows
    got = [None] * 4

    def work(i):
        got[i] = np.stack([p.search(q, k=10, ef=80).rows for q in queries])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g in got:
        np.testing.assert_array_equal(g, want)


def _another_thread_runs_during(call, max_calls):
    """Whether another Python thread runs while `call` is inside the extension.

    A handshake, not a stopwatch: the switch interval is raised so far that the
    interpreter never takes the GIL from this thread on its own; the other
    thread, blocked on `go` until this one is past every blocking call of its
    own, can then run only when the extension releases the GIL. It sets
    `ran`; `call` is repeated until it has (at most `max_calls` times: what a
    GIL held throughout would end with, `ran` unset)."""
    go, ran = threading.Event(), threading.Event()

    def other():
        go.wait()
        ran.set()

    old = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)  # before the thread starts: it waits with this interval too
    try:
        t = threading.Thread(target=other)
        t.start()
        go.set()
        calls = 0
        while not ran.is_set() and calls < max_calls:
            call()
            calls += 1
        seen = ran.is_set()
    finally:
        sys.setswitchinterval(old)
    t.join(timeout=60)  # a hang guard only
    assert not t.is_alive()
    return seen, calls


def test_searches_release_the_gil(graph):
    """While a search runs in the extension, another Python thread runs: for
    the exact scan, the batch search and the single search."""
    path, _, _, queries, _ = graph
    p = stabspace.Partition(path)
    Q = np.tile(queries, (10, 1))  # 2,000 queries
    for name, call, max_calls in [
        ("search_exact", lambda: p.search_exact(Q, k=10), 50),
        ("search_batch", lambda: p.search_batch(Q, k=10, ef=200), 50),
        ("search", lambda: [p.search(q, k=10, ef=200) for q in queries], 500),
    ]:
        seen, calls = _another_thread_runs_during(call, max_calls)
        assert seen, f"{name}: no other thread ran during {calls} calls (the GIL was held)"


@pytest.mark.skipif(not getattr(sys, "_is_gil_enabled", lambda: True)(), reason="a free-threaded Python has no GIL")
def test_the_gil_handshake_tells_a_held_gil_from_a_released_one():
    """The handshake above fails for calls that keep the GIL (a Python loop
    that never blocks, a sort in C) and passes for one that releases it (a sleep)."""
    import time

    def busy():
        x = 0
        for i in range(20000):
            x += i

    assert _another_thread_runs_during(busy, 200) == (False, 200)
    descending = list(range(200_000, 0, -1))
    assert _another_thread_runs_during(lambda: sorted(descending), 50) == (False, 50)
    assert _another_thread_runs_during(lambda: time.sleep(0.001), 1000)[0]


def test_build_calibrates_on_the_queries_given_and_searches_take_their_breadth(tmp_path):
    """`calibration_queries`: the recall is calibrated on the queries users send, and the
    breadth it gives for 0.95 delivers it on other queries of their kind (brute force)."""
    both = clustered(5400, DIM, seed=3)
    data = both[:5000]
    # Queries off the rows: each a row of the same kind pushed by as much noise.
    rng = np.random.default_rng(4)
    off = both[5000:] + 0.8 * rng.standard_normal((400, DIM)).astype(np.float32) * np.linalg.norm(
        both[5000:], axis=1, keepdims=True
    ) / np.sqrt(DIM)
    calibrate_on, held_out = off[:200], off[200:]
    path = tmp_path / "q.stabidx"
    stats = stabspace.build(path, [f"r{i}" for i in range(5000)], data, calibration_queries=calibrate_on)
    assert stats["calibrated_on"] == "given queries"
    p = stabspace.Partition(path)
    assert p.info["calibrated_on"] == "given queries"
    got = p.search_batch(held_out, k=10)
    assert got.ef == p.ef_for(0.95)
    want_rows, want_cos = brute_force(data, held_out, 10)
    kth = want_cos[:, -1:]
    recall = np.mean(got.cosine >= kth - 1e-6)
    assert recall >= 0.93, f"recall@10 {recall:.3f} at the breadth calibrated on given queries for 0.95"
    with pytest.raises(ValueError, match="calibration_queries"):
        stabspace.build(
            tmp_path / "bad.stabidx",
            [f"r{i}" for i in range(5000)],
            data,
            calibration_queries=np.zeros((3, DIM + 1), dtype=np.float32),
        )
