#!/usr/bin/env python3
"""Real-price market for eval-retrieval: skfolio's bundled S&P 500 sample
(20 US stocks, daily adjusted closes 1990-2022) as importable CSVs, plus a
scenario set of historical stress windows chosen from the data itself.

    pip install skfolio            # the data ships inside the package (BSD-3); we do not commit it
    python scripts/sp500_market.py --out DIR [--horizon 20] [--gap 20] [--min-start 260]
                                   [--random N --seed S]
    scripts/eval-encoders DIR SP500_20 SP500_STRESS_WINDOWS      # or SP500_RANDOM_WINDOWS

With --random N the set is instead SP500_RANDOM_WINDOWS: N windows at random
starts (seeded), with the same spacing rules: a check that results do not
depend on how the stress windows were picked.

Writes DIR/instruments.csv, prices.csv, scenarios.csv, scenario_paths.csv and
DIR/windows_selected.csv (diagnostics: kind, start, EW return, EW vol).

Window selection (deterministic): every start s (s >= min_start, s+H-1 < T)
gets the equal-weight (EW) portfolio's H-day compound return R(s) and
realised daily vol V(s) (std of the EW daily simple returns over the window).
Four kinds are scored:
  crash      most negative R
  grind      most negative R among windows with V below the median V
  volspike   highest V among windows with |R| < 3%
  rebound    highest R among windows whose previous H days had R < -5%
Kinds take turns (crash, grind, volspike, rebound, crash, ...) picking their
best remaining candidate that keeps >= gap trading days between the end of one
window and the start of another, until each kind has its quota or runs out.
Window day d return = close[s+d]/close[s+d-1] - 1 (all 20 stocks).
"""
import argparse
import os

import numpy as np
import pandas as pd

SET_ID = "SP500_STRESS_WINDOWS"
MARKET_ID = "SP500_20"
QUOTA = {"crash": 10, "grind": 8, "volspike": 8, "rebound": 8}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--horizon", type=int, default=20)
    ap.add_argument("--gap", type=int, default=20)
    ap.add_argument("--min-start", type=int, default=260)
    ap.add_argument("--random", type=int, default=0, help="N random windows instead of stress windows")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    from skfolio.datasets import load_sp500_dataset

    px = load_sp500_dataset().sort_index()
    px = px.dropna(how="any")  # complete panel: every stock every day
    assert (px.values > 0).all()
    os.makedirs(a.out, exist_ok=True)
    tick = list(px.columns)
    ids = [f"{t}.US" for t in tick]
    dates = [d.strftime("%Y-%m-%d") for d in px.index]
    close = px.values.astype(float)
    T, N = close.shape
    H = a.horizon

    pd.DataFrame({"instrument_id": ids, "issuer_id": tick, "market_id": MARKET_ID,
                  "region": "US", "status": "active"}).to_csv(
        os.path.join(a.out, "instruments.csv"), index=False)
    # long format prices; volume is not in the dataset -> 0 (a whole number >= 0 is all import needs)
    long = pd.DataFrame({
        "instrument_id": np.repeat(ids, T),
        "trade_date": np.tile(dates, N),
        "close": close.T.reshape(-1),
        "volume": 0,
    })
    long["close"] = long["close"].map(lambda x: f"{x:.10g}")
    long.to_csv(os.path.join(a.out, "prices.csv"), index=False)

    simple = np.full((T, N), np.nan)
    simple[1:] = close[1:] / close[:-1] - 1.0
    ew = simple.mean(axis=1)  # EW daily return (nan at 0)
    starts = np.arange(a.min_start, T - H + 1)
    win = np.lib.stride_tricks.sliding_window_view(ew, H)  # win[s] = ew[s:s+H]
    R = np.prod(1 + win, axis=1) - 1
    V = win.std(axis=1, ddof=1)
    prevR = np.full(len(R), np.nan)
    prevR[H:] = R[:-H]
    R, V, prevR = R[starts], V[starts], prevR[starts]
    medV = np.median(V)
    score = {
        "crash": -R,
        "grind": np.where(V < medV, -R, -np.inf),
        "volspike": np.where(np.abs(R) < 0.03, V, -np.inf),
        "rebound": np.where(prevR < -0.05, R, -np.inf),
    }
    order = {k: starts[np.argsort(-v, kind="stable")] for k, v in score.items()}
    valid = {k: set(starts[np.isfinite(v)].tolist()) for k, v in score.items()}
    chosen = []  # (kind, s)
    taken = {k: 0 for k in QUOTA}
    ptr = {k: 0 for k in QUOTA}
    sep = H + a.gap  # |s_i - s_j| >= H + gap  <=>  gap days between windows
    active = True
    while active:
        active = False
        for k in QUOTA:
            if taken[k] >= QUOTA[k]:
                continue
            o = order[k]
            while ptr[k] < len(o):
                s = int(o[ptr[k]]); ptr[k] += 1
                if s not in valid[k]:
                    ptr[k] = len(o); break
                if all(abs(s - c) >= sep for _, c in chosen):
                    chosen.append((k, s)); taken[k] += 1; active = True
                    break
    set_id = SET_ID
    if a.random:
        set_id = "SP500_RANDOM_WINDOWS"
        rng = np.random.default_rng(a.seed)
        chosen = []
        for s in rng.permutation(starts):
            if len(chosen) == a.random:
                break
            if all(abs(int(s) - c) >= sep for _, c in chosen):
                chosen.append(("random", int(s)))
    chosen.sort(key=lambda x: x[1])

    scen_rows, path_rows, diag = [], [], []
    for n, (k, s) in enumerate(chosen, 1):
        r_ew = float(np.prod(1 + ew[s:s + H]) - 1)
        sev = "HIGH" if r_ew < -0.15 else "MEDIUM" if r_ew < -0.05 else "LOW"
        sid = f"SP500_{n:02d}_{dates[s]}"
        scen_rows.append((set_id, sid, dates[s], "historical_window", sev))
        diag.append((sid, k, s, dates[s], dates[s + H - 1], round(r_ew, 4),
                     round(float(ew[s:s + H].std(ddof=1)), 5), sev))
        for d in range(H):
            for j in range(N):
                path_rows.append((set_id, sid, d, ids[j], f"{simple[s + d, j]:.8f}"))
    pd.DataFrame(scen_rows, columns=["scenario_set_id", "scenario_id", "scenario_date",
                                     "shock_type", "severity"]).to_csv(
        os.path.join(a.out, "scenarios.csv"), index=False)
    pd.DataFrame(path_rows, columns=["scenario_set_id", "scenario_id", "day_index",
                                     "instrument_id", "return"]).to_csv(
        os.path.join(a.out, "scenario_paths.csv"), index=False)
    dg = pd.DataFrame(diag, columns=["scenario_id", "kind", "start_idx", "start", "end",
                                     "ew_return", "ew_vol", "severity"])
    dg.to_csv(os.path.join(a.out, "windows_selected.csv"), index=False)
    print(dg.to_string(index=False))
    print(f"{len(chosen)} windows, {T} days x {N} instruments -> {a.out}")


if __name__ == "__main__":
    main()
