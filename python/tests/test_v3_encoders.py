"""The v3 encoders (num-stab-core-v3, num-scenario-core-v3) as the CLI stores
them, against an independent numpy computation from the generated CSV files
(the formulas of README "v3"), in another language than the encoders."""

import sqlite3
import struct

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli

H = 20
HORIZONS = (5, 10, 15, 20)
END_WEIGHT = 0.1


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """A generated market imported into an embedded database, with v3 states
    on the last day and v3 vectors of the historical windows."""
    data = tmp_path_factory.mktemp("v3")
    csv = data / "market"
    run_cli("generate", "--out", str(csv), "--instruments", "20", "--days", "200", "--crashes", "3",
            "--scenario-sets", "historical", data_dir=data)
    for kind in ("instruments", "prices", "scenarios", "scenario-paths"):
        run_cli("import", kind, str(csv / f"{kind.replace('-', '_')}.csv"), data_dir=data)
    prices = pd.read_csv(csv / "prices.csv")
    last = prices["trade_date"].max()
    run_cli("backfill-numeric-embeddings", "--as-of", last, "--market-id", "US_EQ",
            "--model-id", "num-stab-core-v3", data_dir=data)
    run_cli("backfill-numeric-scenario-embeddings", "--scenario-set-id", "HIST_CRASH_WINDOWS",
            "--model-id", "num-scenario-core-v3", data_dir=data)
    return data, csv


def stored(data, model, entity):
    with sqlite3.connect(data / "stabspace.db") as db:
        blob, space = db.execute(
            "SELECT vector, feature_space FROM numeric_window_embeddings WHERE model_id = ? AND entity_id = ?",
            (model, entity),
        ).fetchone()
    return np.array(struct.unpack("<384f", blob), dtype=np.float64), space


def group(own, m, s):
    """[sort r | sort |r| | sort m | sort s] with the r blocks averaged over the rows of `own`."""
    return np.concatenate([
        np.sort(own, axis=1).mean(axis=0),
        np.sort(np.abs(own), axis=1).mean(axis=0),
        np.sort(m),
        np.sort(s),
    ])


def test_state_is_its_groups_over_the_markets_last_days(market):
    data, csv = market
    active = pd.read_csv(csv / "instruments.csv").query("status == 'active'")["instrument_id"]
    prices = pd.read_csv(csv / "prices.csv")
    close = prices[prices.instrument_id.isin(active)].pivot(index="trade_date", columns="instrument_id",
                                                             values="close")
    r = np.log(close.values[1:] / close.values[:-1])[-H:]  # days × instruments
    m, s = r.mean(axis=1), r.std(axis=1)
    for j, instrument in enumerate(close.columns[:3]):
        want = np.concatenate([group(r[-k:, j][None, :], m[-k:], s[-k:]) for k in HORIZONS])
        got, space = stored(data, "num-stab-core-v3", instrument)
        np.testing.assert_allclose(got[: 10 * H], want, atol=1e-7, err_msg=instrument)
        assert not got[10 * H:].any()
        assert space == "stab-v3-multiscale-h20"


def test_scenario_is_the_weighted_mean_of_its_stretches(market):
    data, csv = market
    paths = pd.read_csv(csv / "scenario_paths.csv")
    for sid, rows in paths.groupby("scenario_id"):
        x = np.log1p(rows.pivot(index="day_index", columns="instrument_id", values="return").values[:H]).T
        m, s = x.mean(axis=0), x.std(axis=0)
        want = []
        for k in HORIZONS:
            stretches = [group(x[:, a:a + k], m[a:a + k], s[a:a + k]) for a in range(H - k + 1)]
            want.append((1 - END_WEIGHT) * np.mean(stretches, axis=0) + END_WEIGHT * stretches[-1])
        got, space = stored(data, "num-scenario-core-v3", sid)
        np.testing.assert_allclose(got[: 10 * H], np.concatenate(want), atol=1e-7, err_msg=sid)
        assert space == "stab-v3-multiscale-h20"
