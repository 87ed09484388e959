//! Write throughput of stored vectors (the write half of every backfill), on
//! SQLite and PostgreSQL, as a criterion benchmark.
//!
//! `cargo bench --bench backfill` writes 20,000 vectors per iteration; set
//! `STABSPACE_BENCH_VECTORS=100000` for the figure the foundation issue asks for.
//! PostgreSQL runs against a fresh database on TEST_DATABASE_URL (default
//! postgres://postgres@127.0.0.1:5432/postgres) and is skipped, with a note,
//! when the server is unreachable. Iterations after the first replace the rows
//! (the re-run path of a backfill).

use std::time::Duration;

use chrono::NaiveDate;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use stabspace::storage::bulk::{BulkWriter, Value};
use stabspace::storage::tables::NUMERIC_WINDOW_EMBEDDINGS;
use stabspace::storage::Db;
use stabspace::{vector, with_pool};

fn rows(n: usize) -> Vec<Vec<Value>> {
    let date = NaiveDate::from_ymd_opt(2025, 1, 31).unwrap();
    (0..n)
        .map(|i| {
            let v: Vec<f32> = (0..vector::DIM)
                .map(|j| ((i * 31 + j * 7) % 1000) as f32 * 1e-3)
                .collect();
            vec![
                Value::Text("SCENARIO".into()),
                Value::Text(format!("MC_{i:06}")),
                Value::Text("BENCH_SET".into()),
                Value::Date(date),
                Value::Int(20),
                Value::Text("num-scenario-core-v1".into()),
                Value::Bytes(vector::to_bytes(&v)),
                Value::Null,
                Value::Null,
                Value::Text("stab-v1".into()),
            ]
        })
        .collect()
}

async fn write_all(db: &Db, rows: &[Vec<Value>]) {
    let mut tx = db.begin().await.unwrap();
    let mut w = BulkWriter::new(&NUMERIC_WINDOW_EMBEDDINGS);
    for r in rows {
        w.push(&mut tx, r.clone()).await.unwrap();
    }
    w.finish(&mut tx).await.unwrap();
    db.commit(tx).await.unwrap();
}

async fn fresh_postgres() -> Option<(Db, Db, String)> {
    let admin_url = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let admin = match Db::connect(&admin_url).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("PostgreSQL benchmark skipped: {e}");
            return None;
        }
    };
    let name = format!("stabspace_bench_{}", std::process::id());
    with_pool!(admin, p => sqlx::query(&format!("CREATE DATABASE {name}")).execute(p).await.map(|_| ()))
        .unwrap();
    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_path(&name);
    Some((Db::open(url.as_str()).await.unwrap(), admin, name))
}

fn bench_writes(c: &mut Criterion) {
    let n: usize = std::env::var("STABSPACE_BENCH_VECTORS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = rows(n);
    let mut group = c.benchmark_group("write_vectors");
    group.throughput(Throughput::Elements(n as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));

    let dir = tempfile::tempdir().unwrap();
    let sqlite = rt
        .block_on(Db::open(&format!(
            "sqlite://{}",
            dir.path().join("bench.db").display()
        )))
        .unwrap();
    group.bench_with_input(BenchmarkId::new("sqlite", n), &data, |b, d| {
        b.iter(|| rt.block_on(write_all(&sqlite, d)))
    });

    if let Some((pg, admin, name)) = rt.block_on(fresh_postgres()) {
        group.bench_with_input(BenchmarkId::new("postgres", n), &data, |b, d| {
            b.iter(|| rt.block_on(write_all(&pg, d)))
        });
        rt.block_on(async {
            pg.close().await;
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            let _ = with_pool!(admin, p => sqlx::query(&sql).execute(p).await.map(|_| ()));
        });
    }
    group.finish();
}

criterion_group!(benches, bench_writes);
criterion_main!(benches);
