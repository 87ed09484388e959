//! A deterministic synthetic market written as CSV files in the import formats.
//!
//! One market factor with calm and volatile regimes drives every instrument
//! (beta times the factor plus fat-tailed idiosyncratic noise). Stress episodes
//! of `horizon` trading days are planted at known places, their shapes in turn
//! (sharp crash, slow grind, volatility spike, rebound; [`EpisodeShape`]), each
//! with its own drift and volatility, and become the historical-window scenario
//! set (paths of every active instrument over the episode's days); a Monte-Carlo
//! set draws stress paths of several kinds from the same factor model.
//! Portfolios rebalance at month ends and get a daily risk report; each has one
//! backtest run. Everything follows from `seed`.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal, StudentT};
use serde_json::json;

use crate::error::{Error, Result};
use crate::import::ImportKind;

/// Scenario set of the planted episodes' windows (shock_type `historical_window`).
pub const HISTORICAL_SET: &str = "HIST_CRASH_WINDOWS";
/// Scenario set of Monte-Carlo stress paths.
pub const MONTE_CARLO_SET: &str = "MC_STRESS_V0";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum SetKind {
    /// The planted episodes' windows, as observed in the generated prices.
    Historical,
    /// Simulated stress paths (crash, vol spike, slow bleed, rally, calm).
    MonteCarlo,
}

#[derive(Clone, Debug)]
pub struct SynthConfig {
    pub market_id: String,
    pub region: String,
    pub instruments: usize,
    pub days: usize,
    pub seed: u64,
    pub start: NaiveDate,
    /// Planted stress episodes (shapes in turn: [`EpisodeShape::ALL`]).
    pub crashes: usize,
    /// Trading days per scenario (and per crash).
    pub horizon: usize,
    /// Instruments in each Monte-Carlo scenario panel (historical windows cover every active instrument).
    pub scenario_instruments: usize,
    pub mc_scenarios: usize,
    pub portfolios: usize,
    pub sets: Vec<SetKind>,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            market_id: "US_EQ".into(),
            region: "US".into(),
            instruments: 60,
            days: 400,
            seed: 7,
            start: NaiveDate::from_ymd_opt(2022, 1, 3).expect("valid date"),
            crashes: 6,
            horizon: 20,
            scenario_instruments: 10,
            mc_scenarios: 200,
            portfolios: 3,
            sets: vec![SetKind::Historical, SetKind::MonteCarlo],
        }
    }
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Generated {
    /// Files in import order, with their row counts.
    pub files: Vec<(ImportKind, PathBuf, u64)>,
    pub first_date: NaiveDate,
    pub last_date: NaiveDate,
    /// First and last trading day of each planted episode.
    pub crash_windows: Vec<(NaiveDate, NaiveDate)>,
    pub scenario_sets: Vec<String>,
    pub portfolios: Vec<String>,
}

/// Weekdays from `start` on.
pub fn trading_days(start: NaiveDate, n: usize) -> Vec<NaiveDate> {
    let mut out = Vec::with_capacity(n);
    let mut d = start;
    while out.len() < n {
        if !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
            out.push(d);
        }
        d += Duration::days(1);
    }
    out
}

/// Indices of the last trading day of each month among `dates[from..]`, and of the last date.
pub fn month_ends(dates: &[NaiveDate], from: usize) -> Vec<usize> {
    (from..dates.len())
        .filter(|&t| t + 1 == dates.len() || dates[t + 1].month() != dates[t].month())
        .collect()
}

struct Csv {
    w: csv::Writer<BufWriter<File>>,
    path: PathBuf,
    rows: u64,
}

impl Csv {
    fn create(dir: &Path, name: &str, header: &[&str]) -> Result<Csv> {
        let path = dir.join(name);
        let f = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut w = csv::Writer::from_writer(BufWriter::with_capacity(1 << 20, f));
        w.write_record(header).map_err(|e| csv_err(&path, e))?;
        Ok(Csv { w, path, rows: 0 })
    }

    fn row<I, T>(&mut self, fields: I) -> Result<()>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        self.rows += 1;
        self.w.write_record(fields).map_err(|e| csv_err(&self.path, e))
    }

    fn finish(mut self, kind: ImportKind) -> Result<(ImportKind, PathBuf, u64)> {
        self.w.flush().map_err(|e| Error::io(&self.path, e))?;
        Ok((kind, self.path, self.rows))
    }
}

fn csv_err(path: &Path, e: csv::Error) -> Error {
    Error::io(path, std::io::Error::other(e))
}

fn t4(rng: &mut ChaCha8Rng) -> f64 {
    // Student t with 4 degrees of freedom, scaled to unit variance.
    let t: f64 = StudentT::new(4.0).expect("valid dof").sample(rng);
    t / 2f64.sqrt()
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    StandardNormal.sample(rng)
}

/// The shape of a planted stress episode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpisodeShape {
    /// A steep fall in the first third, then a high-volatility drift.
    SharpCrash,
    /// A steady decline at modest volatility.
    SlowGrind,
    /// Very high volatility with no net move.
    VolSpike,
    /// A steep fall in the first half, then a recovery of most of it.
    Rebound,
}

impl EpisodeShape {
    /// The order in which planted episodes take their shapes.
    pub const ALL: [EpisodeShape; 4] = [
        EpisodeShape::SharpCrash,
        EpisodeShape::SlowGrind,
        EpisodeShape::VolSpike,
        EpisodeShape::Rebound,
    ];
}

/// One planted episode: where it starts, its shape, drift and volatility.
struct Episode {
    start: usize,
    shape: EpisodeShape,
    drift: f64,
    vol: f64,
}

impl Episode {
    fn draw(shape: EpisodeShape, start: usize, rng: &mut ChaCha8Rng) -> Episode {
        let (drift, vol) = match shape {
            EpisodeShape::SharpCrash => (rng.random_range(-0.020..-0.008), rng.random_range(0.025..0.05)),
            EpisodeShape::SlowGrind => (rng.random_range(-0.007..-0.003), rng.random_range(0.008..0.014)),
            EpisodeShape::VolSpike => (rng.random_range(-0.002..0.002), rng.random_range(0.03..0.055)),
            EpisodeShape::Rebound => (rng.random_range(-0.025..-0.012), rng.random_range(0.02..0.04)),
        };
        Episode {
            start,
            shape,
            drift,
            vol,
        }
    }

    /// The market factor's mean and volatility on `day` of the episode, and
    /// the multiplier of idiosyncratic noise.
    fn factor(&self, day: usize, horizon: usize) -> (f64, f64, f64) {
        let (d, v) = (self.drift, self.vol);
        match self.shape {
            EpisodeShape::SharpCrash if 3 * day < horizon => (2.5 * d, v, 2.0),
            EpisodeShape::SharpCrash => (0.25 * d, v, 2.0),
            EpisodeShape::SlowGrind => (d, v, 1.2),
            EpisodeShape::VolSpike => (d, v, 2.5),
            EpisodeShape::Rebound if 2 * day < horizon => (d, v, 2.0),
            EpisodeShape::Rebound => (-0.8 * d, 0.8 * v, 2.0),
        }
    }
}

/// Write the market into `out` (created if needed).
pub fn generate(cfg: &SynthConfig, out: &Path) -> Result<Generated> {
    let warmup = 70;
    let min_days = warmup + cfg.crashes * (cfg.horizon + 5) + cfg.horizon;
    if cfg.days < min_days.max(90) {
        return Err(Error::Invalid(format!(
            "--days {} is too short for {} crashes of {} days; use at least {}",
            cfg.days,
            cfg.crashes,
            cfg.horizon,
            min_days.max(90)
        )));
    }
    if cfg.instruments < 2 || cfg.horizon == 0 {
        return Err(Error::Invalid(
            "--instruments must be at least 2 and --horizon at least 1".into(),
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let dates = trading_days(cfg.start, cfg.days);
    let n = cfg.instruments;

    // Instruments: every 25th is delisted; pairs of instruments share an issuer.
    let ids: Vec<String> = (0..n)
        .map(|i| format!("SYN{:04}.{}", i + 1, cfg.region))
        .collect();
    let issuer_of = |i: usize| format!("ISS_{:04}", i / 2 + 1);
    let active: Vec<usize> = (0..n).filter(|i| i % 25 != 24).collect();
    let beta: Vec<f64> = (0..n).map(|_| rng.random_range(0.6..1.5)).collect();
    let idio: Vec<f64> = (0..n).map(|_| rng.random_range(0.006..0.02)).collect();

    // Planted episodes: evenly spread after the warm-up, with jitter, their
    // shapes in turn (sharp crash, slow grind, volatility spike, rebound).
    let spacing = (cfg.days - warmup - cfg.horizon) / cfg.crashes.max(1);
    let mut episode_at = vec![None; cfg.days];
    let mut crash_windows = Vec::new();
    let mut episodes = Vec::new();
    for k in 0..cfg.crashes {
        let jitter = rng.random_range(0..=spacing.saturating_sub(cfg.horizon + 5));
        let s = warmup + k * spacing + jitter;
        let e = Episode::draw(EpisodeShape::ALL[k % EpisodeShape::ALL.len()], s, &mut rng);
        for (day, slot) in episode_at.iter_mut().skip(s).take(cfg.horizon).enumerate() {
            *slot = Some((k, day));
        }
        crash_windows.push((dates[s], dates[s + cfg.horizon - 1]));
        episodes.push(e);
    }

    // Daily log returns, returns[t * n + i]; day 0 has none.
    let mut returns = vec![0.0f64; cfg.days * n];
    let mut volatile = false;
    for t in 1..cfg.days {
        volatile = if volatile {
            rng.random::<f64>() > 0.05
        } else {
            rng.random::<f64>() < 0.02
        };
        let (m, mult) = match episode_at[t] {
            Some((k, day)) => {
                let (drift, vol, mult) = episodes[k].factor(day, cfg.horizon);
                (drift + vol * normal(&mut rng), mult)
            }
            None if volatile => (0.0003 + 0.018 * t4(&mut rng), 1.5),
            None => (0.0005 + 0.008 * t4(&mut rng), 1.0),
        };
        for i in 0..n {
            returns[t * n + i] = beta[i] * m + idio[i] * mult * t4(&mut rng);
        }
    }

    let mut files = Vec::new();

    let mut f = Csv::create(
        out,
        "instruments.csv",
        &["instrument_id", "issuer_id", "market_id", "region", "status"],
    )?;
    for (i, id) in ids.iter().enumerate() {
        let status = if i % 25 == 24 { "delisted" } else { "active" };
        f.row([id.as_str(), &issuer_of(i), &cfg.market_id, &cfg.region, status])?;
    }
    files.push(f.finish(ImportKind::Instruments)?);

    let mut f = Csv::create(
        out,
        "prices.csv",
        &["instrument_id", "trade_date", "close", "volume"],
    )?;
    for (i, id) in ids.iter().enumerate() {
        let mut close: f64 = rng.random_range(20.0..200.0);
        let base_volume: f64 = rng.random_range(1e5..5e6);
        for (t, d) in dates.iter().enumerate() {
            let r = returns[t * n + i];
            close *= r.exp();
            let volume = base_volume * (0.25 * normal(&mut rng)).exp() * (1.0 + 25.0 * r.abs());
            f.row([
                id.clone(),
                d.to_string(),
                format!("{close:.4}"),
                format!("{volume:.0}"),
            ])?;
        }
    }
    files.push(f.finish(ImportKind::Prices)?);

    // A historical window is the market's own history: every active instrument.
    // Monte-Carlo paths cover the first `scenario_instruments` active instruments.
    let scen: Vec<usize> = active
        .iter()
        .copied()
        .take(cfg.scenario_instruments.max(1))
        .collect();
    let mut scenarios = Csv::create(
        out,
        "scenarios.csv",
        &[
            "scenario_set_id",
            "scenario_id",
            "scenario_date",
            "shock_type",
            "severity",
        ],
    )?;
    let mut paths = Csv::create(
        out,
        "scenario_paths.csv",
        &[
            "scenario_set_id",
            "scenario_id",
            "day_index",
            "instrument_id",
            "return",
        ],
    )?;
    let mut sets = Vec::new();
    if cfg.sets.contains(&SetKind::Historical) {
        sets.push(HISTORICAL_SET.to_string());
        for (k, e) in episodes.iter().enumerate() {
            let s = e.start;
            let sid = format!("HIST_{:02}_{}", k + 1, dates[s]);
            let market: f64 = (s..s + cfg.horizon)
                .map(|t| active.iter().map(|&i| returns[t * n + i]).sum::<f64>() / active.len() as f64)
                .sum();
            let severity = if market < -0.2 {
                "HIGH"
            } else if market < -0.1 {
                "MEDIUM"
            } else {
                "LOW"
            };
            scenarios.row([
                HISTORICAL_SET,
                &sid,
                &dates[s].to_string(),
                "historical_window",
                severity,
            ])?;
            for day in 0..cfg.horizon {
                for &i in &active {
                    let r = returns[(s + day) * n + i].exp_m1();
                    paths.row([
                        HISTORICAL_SET,
                        &sid,
                        &day.to_string(),
                        &ids[i],
                        &format!("{r:.8}"),
                    ])?;
                }
            }
        }
    }
    if cfg.sets.contains(&SetKind::MonteCarlo) {
        sets.push(MONTE_CARLO_SET.to_string());
        let last = dates[cfg.days - 1].to_string();
        for j in 0..cfg.mc_scenarios {
            let (shock, drift, vol): (&str, f64, f64) = match rng.random_range(0..5) {
                0 => (
                    "EQUITY_CRASH",
                    rng.random_range(-0.02..-0.008),
                    rng.random_range(0.025..0.05),
                ),
                1 => (
                    "VOL_SPIKE",
                    rng.random_range(-0.003..0.003),
                    rng.random_range(0.025..0.045),
                ),
                2 => (
                    "SLOW_BLEED",
                    rng.random_range(-0.006..-0.002),
                    rng.random_range(0.008..0.015),
                ),
                3 => (
                    "RALLY",
                    rng.random_range(0.004..0.012),
                    rng.random_range(0.01..0.02),
                ),
                _ => (
                    "CALM",
                    rng.random_range(-0.001..0.001),
                    rng.random_range(0.004..0.009),
                ),
            };
            let total = drift * cfg.horizon as f64;
            let severity = if total < -0.2 || vol > 0.035 {
                "HIGH"
            } else if total < -0.08 || vol > 0.02 {
                "MEDIUM"
            } else {
                "LOW"
            };
            let sid = format!("MC_{:06}", j + 1);
            scenarios.row([MONTE_CARLO_SET, &sid, &last, shock, severity])?;
            for day in 0..cfg.horizon {
                let m = drift + vol * normal(&mut rng);
                for &i in &scen {
                    let r = (beta[i] * m + idio[i] * 1.5 * t4(&mut rng)).exp_m1();
                    paths.row([
                        MONTE_CARLO_SET,
                        &sid,
                        &day.to_string(),
                        &ids[i],
                        &format!("{r:.8}"),
                    ])?;
                }
            }
        }
    }
    files.push(scenarios.finish(ImportKind::Scenarios)?);
    files.push(paths.finish(ImportKind::ScenarioPaths)?);

    // Portfolios: 15 active holdings each, reweighted at every month end after the warm-up.
    let month_ends = month_ends(&dates, warmup);
    let mut portfolios = Vec::new();
    let mut pf = Csv::create(
        out,
        "portfolios.csv",
        &["portfolio_id", "as_of_date", "weights_json"],
    )?;
    let mut rr = Csv::create(
        out,
        "risk_reports.csv",
        &["portfolio_id", "as_of_date", "risk_metrics_json"],
    )?;
    let mut bt = Csv::create(
        out,
        "backtest_runs.csv",
        &[
            "run_id",
            "strategy_id",
            "start_date",
            "end_date",
            "config_json",
            "metrics_json",
        ],
    )?;
    for p in 0..cfg.portfolios {
        let pid = format!("PORTFOLIO_CORE_{}_{:03}", cfg.market_id, p + 1);
        let mut holdings = active.clone();
        holdings.shuffle(&mut rng);
        holdings.truncate(15);
        holdings.sort_unstable();
        let mut weights_at: Vec<(usize, Vec<f64>)> = Vec::new();
        for &t in &month_ends {
            let raw: Vec<f64> = holdings.iter().map(|_| rng.random_range(0.5..1.5)).collect();
            let sum: f64 = raw.iter().sum();
            let w: Vec<f64> = raw.iter().map(|x| (x / sum * 1e6).round() / 1e6).collect();
            let obj: serde_json::Map<String, serde_json::Value> = holdings
                .iter()
                .zip(&w)
                .map(|(&i, &x)| (ids[i].clone(), json!(x)))
                .collect();
            pf.row([
                pid.clone(),
                dates[t].to_string(),
                serde_json::Value::Object(obj).to_string(),
            ])?;
            weights_at.push((t, w));
        }
        // Daily risk reports from the first month end on.
        let mut daily = Vec::new();
        let mut wi = 0;
        let first = month_ends.first().copied().unwrap_or(warmup);
        for t in first..cfg.days {
            while wi + 1 < weights_at.len() && weights_at[wi + 1].0 <= t {
                wi += 1;
            }
            let w = &weights_at[wi].1;
            let rp: f64 = holdings
                .iter()
                .zip(w)
                .map(|(&i, x)| x * returns[t * n + i].exp_m1())
                .sum();
            daily.push(rp);
            let tail = &daily[daily.len().saturating_sub(20)..];
            let mean = tail.iter().sum::<f64>() / tail.len() as f64;
            let vol = (tail.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / tail.len() as f64).sqrt();
            let metrics = json!({
                "daily_return": round6(rp),
                "volatility_20d": round6(vol),
                "var_95": round6(1.645 * vol),
                "expected_shortfall_95": round6(2.063 * vol),
                "gross_exposure": 1.0,
            });
            rr.row([pid.clone(), dates[t].to_string(), metrics.to_string()])?;
        }
        let cumulative = daily.iter().fold(1.0, |acc, r| acc * (1.0 + r)) - 1.0;
        let mean = daily.iter().sum::<f64>() / daily.len().max(1) as f64;
        let sd = (daily.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / daily.len().max(1) as f64).sqrt();
        let sharpe = if sd > 0.0 { mean / sd * 252f64.sqrt() } else { 0.0 };
        let run_id = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            rng.random::<u32>(),
            rng.random::<u16>(),
            rng.random::<u16>() & 0xfff,
            rng.random::<u16>() & 0xfff,
            rng.random::<u64>() & 0xffff_ffff_ffff
        );
        bt.row([
            run_id,
            format!("{}_CORE_LONG", cfg.market_id),
            dates[first].to_string(),
            dates[cfg.days - 1].to_string(),
            json!({ "portfolio_id": pid, "rebalance": "month_end" }).to_string(),
            json!({ "cumulative_return": round6(cumulative), "annualised_sharpe": round6(sharpe) })
                .to_string(),
        ])?;
        portfolios.push(pid);
    }
    files.push(pf.finish(ImportKind::Portfolios)?);
    files.push(rr.finish(ImportKind::RiskReports)?);
    files.push(bt.finish(ImportKind::BacktestRuns)?);

    // Quarterly fundamentals per issuer, as slow random walks.
    let mut fu = Csv::create(
        out,
        "fundamentals.csv",
        &["issuer_id", "as_of_date", "fundamentals_json"],
    )?;
    for iss in 0..n.div_ceil(2) {
        let mut leverage: f64 = rng.random_range(0.5..4.0);
        let mut roe: f64 = rng.random_range(-0.05..0.25);
        let mut current: f64 = rng.random_range(0.8..2.5);
        let log_cap: f64 = rng.random_range(20.0..27.0);
        for t in (0..cfg.days).step_by(63) {
            leverage = (leverage + 0.1 * normal(&mut rng)).max(0.1);
            roe += 0.01 * normal(&mut rng);
            current = (current + 0.05 * normal(&mut rng)).max(0.2);
            let fund = json!({
                "leverage": round6(leverage),
                "roe": round6(roe),
                "current_ratio": round6(current),
                "log_market_cap": round6(log_cap + 0.02 * t as f64 / 63.0),
            });
            fu.row([
                format!("ISS_{:04}", iss + 1),
                dates[t].to_string(),
                fund.to_string(),
            ])?;
        }
    }
    files.push(fu.finish(ImportKind::Fundamentals)?);

    Ok(Generated {
        files,
        first_date: dates[0],
        last_date: dates[cfg.days - 1],
        crash_windows,
        scenario_sets: sets,
        portfolios,
    })
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}
