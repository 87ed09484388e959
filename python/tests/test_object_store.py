"""Partitions in S3-compatible object storage from Python: the CLI publishes
into moto's S3 server, and `connect(partition_store="s3://…")` fetches the
version it needs into its own cache and answers as the exact scan does."""

import json
import socket

import pytest

from conftest import run_cli

stabspace = pytest.importorskip("stabspace")
moto_server = pytest.importorskip("moto.server")

BUCKET = "stabspace-py"
MODEL = "joint-stab-fragility-v2"


@pytest.fixture()
def s3(monkeypatch):
    """moto's S3 server on a free loopback port with one bucket; the AWS_*
    variables and STABSPACE_PARTITION_STORE point at it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    import boto3

    endpoint = f"http://127.0.0.1:{port}"
    for k, v in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(k, v)
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    url = f"s3://{BUCKET}/py"
    monkeypatch.setenv("STABSPACE_PARTITION_STORE", url)
    yield url
    server.stop()


def test_a_connection_fetches_published_partitions_into_its_cache(s3, tmp_path):
    built = tmp_path / "builder"
    run_cli("demo", "--instruments", "24", "--days", "320", data_dir=built)
    versions = json.loads(run_cli("index", "status", "--versions", "--format", "json", data_dir=built))
    assert versions and all(v["current"] and v["object"].startswith(s3) for v in versions)
    states = json.loads(
        run_cli(
            "show-joint-stab-fragility-states", "--start", "2000-01-01", "--end", "2100-01-01",
            "--model-id", MODEL, "--format", "json", data_dir=built,
        )
    )
    day = max(s["as_of_date"] for s in states)
    instrument = next(s["instrument_id"] for s in states if s["as_of_date"] == day)
    cache = tmp_path / "node-cache"
    db = stabspace.connect(
        database_url=f"sqlite://{built / 'stabspace.db'}",
        data_dir=tmp_path / "empty",
        partition_store=s3,
        cache_dir=cache,
        cache_max_gb=1,
    )
    set_id = versions[0]["scenario_set_id"]
    got = db.similar_scenarios(instrument, day, MODEL, set_id, 5)
    exact = db.similar_scenarios(instrument, day, MODEL, set_id, 5, exact=True)
    assert list(got["answered_by"]) == ["index"] * len(got)
    assert list(exact["answered_by"]) == ["exact-scan"] * len(exact)
    assert list(got["scenario_id"]) == list(exact["scenario_id"])
    fetched = [p.name for p in (cache / "objects").iterdir()]
    assert fetched == [f"{versions[0]['sha256']}.stabidx"]


def test_bad_store_settings_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="not supported"):
        stabspace.connect(data_dir=tmp_path, partition_store="gs://bucket/x")
    with pytest.raises(ValueError, match="cache_max_gb"):
        stabspace.connect(data_dir=tmp_path, partition_store="s3://bucket/x", cache_max_gb=0)
