//! `stabspace serve`: a long-running HTTP/1.1 JSON server for nearest-scenario
//! queries (axum on the tokio runtime the CLI already runs on).
//!
//! Partitions are opened once and shared ([`cache`]); a partition file replaced
//! by a rebuild is picked up by the next request while requests in flight
//! finish on the old map. Every request is counted and timed for `/metrics`
//! ([`metrics`]); bad requests get a 4xx with a JSON error naming the field
//! ([`error`]). Limits: body size, request timeout, concurrent requests, k,
//! ef and vectors per request. There is no authentication: the server binds
//! to loopback by default.

mod api;
mod cache;
mod error;
mod metrics;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::io::Write;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::{Error, Result};
use crate::storage::Db;
pub use cache::PartitionCache;
use error::ApiError;
pub use metrics::Metrics;

/// What one request may ask for, and what the server takes at once.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_k: usize,
    pub max_ef: usize,
    pub max_batch: usize,
    pub max_body_bytes: usize,
    pub timeout: Duration,
    pub concurrency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_k: 1000,
            max_ef: 10_000,
            max_batch: 1024,
            max_body_bytes: 16 << 20,
            timeout: Duration::from_secs(30),
            concurrency: 256,
        }
    }
}

/// State shared by every request.
pub struct App {
    pub db: Db,
    pub cache: Arc<PartitionCache>,
    pub metrics: Metrics,
    pub limits: Limits,
    /// Hold each search (a test hook: [`crate::faults::SERVE_SEARCH_HELD`]).
    hold: bool,
}

impl App {
    pub fn new(db: Db, index_dir: PathBuf, limits: Limits) -> App {
        let metrics = Metrics::new();
        App {
            db,
            cache: Arc::new(PartitionCache::new(index_dir, metrics.partition_reloads.clone())),
            metrics,
            limits,
            hold: crate::faults::armed(crate::faults::SERVE_SEARCH_HELD),
        }
    }

    /// The current file of (model, set); `None`: no file.
    fn partition(
        &self,
        model: &str,
        set: &str,
        quantized: bool,
    ) -> std::result::Result<Option<Arc<cache::Loaded>>, ApiError> {
        let path = crate::partitions::partition_path(self.cache.index_dir(), model, set);
        Ok(self.cache.get(&path, quantized)?)
    }
}

/// The routes, with the limits and the metrics around them.
pub fn router(app: Arc<App>) -> Router {
    let limits = app.limits.clone();
    Router::new()
        .route("/v1/partitions", get(api::partitions))
        .route(
            "/v1/partitions/{joint_model}/{scenario_set}/search",
            post(api::search),
        )
        .route("/v1/similar-scenarios", post(api::similar))
        .route("/v1/portfolio-exposure", post(api::exposure))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .fallback(api::no_route)
        .method_not_allowed_fallback(api::wrong_method)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error (a bug: please report it)",
            )
            .into_response()
        }))
        // One semaphore for the whole server (`Router::layer` wraps each route
        // on its own: a plain ConcurrencyLimitLayer would limit per route).
        .layer(GlobalConcurrencyLimitLayer::new(limits.concurrency))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), track))
        .with_state(app)
}

/// Count and time every request by its route pattern, and answer 408 (as a
/// JSON error) when it takes longer than the limit, its wait for a turn included.
async fn track(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    // A bounded set of label values, whatever methods clients invent.
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "PATCH") => m,
        _ => "other",
    }
    .to_string();
    let started = Instant::now();
    let response = match tokio::time::timeout(app.limits.timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "no answer within {} s (--timeout-secs)",
                app.limits.timeout.as_secs_f64()
            ),
        )
        .into_response(),
    };
    app.metrics
        .requests
        .get_or_create(&metrics::RequestLabels {
            route: route.clone(),
            method,
            status: response.status().as_u16(),
        })
        .inc();
    app.metrics
        .latency
        .get_or_create(&metrics::RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Serve on `addr` until SIGINT or SIGTERM; then stop accepting, let the
/// requests in flight finish (for at most the request timeout and 5 s more;
/// a second signal stops at once), and return.
pub async fn serve(addr: SocketAddr, app: App) -> Result<()> {
    // Before anything is printed: a signal from then on is a shutdown, never the default action.
    let mut signals = Signals::new()?;
    let drain = app.limits.timeout + Duration::from_secs(5);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Invalid(format!("cannot listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Invalid(format!("cannot listen on {addr}: {e}")))?;
    let index_dir = app.cache.index_dir().display().to_string();
    let db = app.db.label().to_string();
    let header_timeout = app.limits.timeout;
    let router = router(Arc::new(app));
    println!("stabspace serve: listening on http://{local} (database {db}, partitions under {index_dir})");
    println!("no authentication: keep it on loopback, or behind a proxy that authenticates");
    let _ = std::io::stdout().flush();
    // Our own accept loop (axum::serve sets no timer, so hyper could not time
    // out a request head that never completes, nor an idle kept-alive
    // connection): HTTP/1.1 connections with a header read timeout, each
    // watched for a graceful shutdown.
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, say: wait, rather than spin.
                        eprintln!("warning: accepting a connection on {local} failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Small JSON answers on kept-alive connections: no Nagle delay.
                let _ = stream.set_nodelay(true);
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    // A client that went away is not the server's error.
                    let _ = conn.await;
                });
            }
            () = signals.next() => break,
        }
    }
    drop(listener);
    println!("stabspace serve: shutting down: no new connections, finishing the requests in flight");
    let _ = std::io::stdout().flush();
    tokio::select! {
        () = graceful.shutdown() => {
            println!("stabspace serve: stopped (requests in flight finished)");
        }
        () = tokio::time::sleep(drain) => {
            println!("stabspace serve: stopped after {} s with requests still open", drain.as_secs());
        }
        () = signals.next() => {
            println!("stabspace serve: stopped at a second signal");
        }
    }
    let _ = std::io::stdout().flush();
    Ok(())
}

/// SIGINT and SIGTERM, hooked when made.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let hook = |kind| signal(kind).map_err(|e| Error::Invalid(format!("cannot handle signals: {e}")));
        Ok(Signals {
            int: hook(SignalKind::interrupt())?,
            term: hook(SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}
