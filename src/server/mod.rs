//! `stabspace serve`: a long-running HTTP/1.1 JSON server for nearest-scenario
//! queries (axum on the tokio runtime the CLI already runs on).
//!
//! Partitions are opened once and shared ([`PartitionCache`]); a partition file replaced
//! by a rebuild is picked up by the next request while requests in flight
//! finish on the old map. Every request is counted and timed for `/metrics`
//! ([`metrics`]); bad requests get a 4xx with a JSON error naming the field
//! ([`error`]), and no response names an absolute path of the machine
//! ([`error::Scrub`]). `GET /v1/partitions` is `index status` in constant work
//! per partition ([`status`]). Limits: body size (a larger `Content-Length`
//! is refused before the body is read), request timeout, concurrent
//! requests, k, ef and vectors per request. Without `--api-key-file` there is
//! no authentication (the server binds to loopback by default); with it,
//! every route but `/healthz` wants one of the file's keys ([`auth`]).

mod api;
mod auth;
mod error;
mod filters;
mod metrics;
mod recall;
mod status;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;
use std::io::Write;

use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};

use tower::limit::GlobalConcurrencyLimitLayer;
use tower::Service;
use tower_http::catch_panic::CatchPanicLayer;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::nearest::PartitionCache;
use crate::storage::Db;
pub use auth::ApiKeys;
use error::{ApiError, Scrub};
pub use metrics::Metrics;
use status::StatusCache;

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
    /// What queries read: the read replica when one is named, else the primary.
    pub db: Db,
    pub cache: Arc<PartitionCache>,
    pub metrics: Metrics,
    pub limits: Limits,
    /// `GET /v1/partitions`'s rows, per file version.
    status: StatusCache,
    /// The data directory's and the database file's paths, out of every answer.
    scrub: Scrub,
    /// Hold each search (a test hook: [`crate::faults::SERVE_SEARCH_HELD`]).
    hold: bool,
    /// `--rebuild-stale`: how often to look for stale partitions, and the
    /// primary they are compared with and rebuilt from (a build must read the
    /// newest rows, never a lagging replica's).
    pub rebuild_stale: Option<(Duration, Db)>,
    /// `--api-key-file`: the keys a request must carry one of; `None`: anyone may ask.
    pub api_keys: Option<ApiKeys>,
    /// `--refresh-secs`: how often a remote partition store's manifest is
    /// read again (new versions fetched before they are swapped in).
    pub refresh_every: Duration,
    /// `--recall-sample`: queries checked against an exact scan ([`recall`]).
    recall: recall::Sampler,
}

impl App {
    pub fn new(db: Db, config: &Config, limits: Limits) -> Result<App> {
        let metrics = Metrics::new();
        let store = config.partition_store()?;
        Ok(App {
            scrub: Scrub::new(&config.data_dir, db.label()).with_partition_dir(&config.index_dir()),
            db,
            status: StatusCache::new(Arc::clone(&store), metrics.partition_verifications.clone()),
            cache: Arc::new(PartitionCache::new(store).on_reload({
                let reloads = metrics.partition_reloads.clone();
                move || {
                    reloads.inc();
                }
            })),
            recall: recall::Sampler::new(0.0, metrics.recall.clone(), None),
            metrics,
            limits,
            hold: crate::faults::armed(crate::faults::SERVE_SEARCH_HELD),
            rebuild_stale: None,
            api_keys: None,
            refresh_every: Duration::from_secs(10),
        })
    }

    /// Check a `fraction` of queries against an exact scan off the request
    /// path, and record what they find in `record_to` ([`recall`]).
    pub fn sample_recall(&mut self, fraction: f64, record_to: Db) {
        self.recall = recall::Sampler::new(fraction, self.metrics.recall.clone(), Some(record_to));
    }
}

/// The routes, with the limits and the metrics around them.
pub fn router(app: Arc<App>) -> Router {
    let limits = app.limits.clone();
    Router::new()
        .route("/v1/partitions", get(api::partitions))
        .route(api::SEARCH_ROUTE, post(api::search))
        .route(api::SIMILAR_ROUTE, post(api::similar))
        .route(api::EXPOSURE_ROUTE, post(api::exposure))
        .route(api::HEALTHZ_ROUTE, get(api::healthz))
        .route("/metrics", get(api::metrics))
        .fallback(api::no_route)
        .method_not_allowed_fallback(api::wrong_method)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        // The body is read in turn (at most --concurrency bodies in memory).
        .layer(middleware::from_fn_with_state(Arc::clone(&app), receive))
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
        // A body above the limit is refused before a request waits for a turn.
        .layer(middleware::from_fn_with_state(Arc::clone(&app), admit))
        // Who may ask, before anything else is spent on a request: no body
        // read, no turn taken (refusals are still counted and timed by `track`).
        .layer(middleware::from_fn_with_state(
            Arc::clone(&app),
            auth::authenticate,
        ))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), track))
        .with_state(app)
}

/// How long a refused body is still read (and discarded), at most.
const LINGER: Duration = Duration::from_secs(2);

/// Refuse a `Content-Length` above the limit at once (413), without reading
/// the body or waiting for a turn. A request counts as in flight on its
/// connection ([`InFlight`]) once it has been received whole: here when it
/// has no body, else when [`receive`] has read it; from then until its
/// answer has been handed to the connection, a shutdown finishes it (and
/// closes connections with nothing in flight at once). Error answers leave
/// here with the machine's paths taken out ([`Scrub`]).
async fn admit(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let max = app.limits.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > max as u64) {
        linger(req.into_body().into_data_stream(), max);
        return too_large(format!(
            "request body of {n} bytes (Content-Length) is above the server's limit of {max} bytes (--max-body-mb)"
        ));
    }
    let mark = Mark::default();
    if let Some(conn) = req.extensions().get::<InFlight>() {
        if req.body().is_end_stream() {
            mark.set(conn);
        }
    }
    req.extensions_mut().insert(mark.clone());
    let response = scrub(&app.scrub, next.run(req).await).await;
    match mark.take() {
        // Until the body has been handed to the connection.
        Some(guard) => response.map(|body| Body::new(Answering { body, _guard: guard })),
        None => response,
    }
}

/// Read the request's body whole (up to the limit) before the handler runs,
/// so that a request is either received whole or not at all.
async fn receive(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let max = app.limits.max_body_bytes;
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) if bytes.len() + c.len() > max => {
                linger(stream, max);
                return too_large(format!(
                    "request body above the server's limit of {max} bytes (--max-body-mb)"
                ));
            }
            Ok(c) => bytes.extend_from_slice(&c),
            Err(e) => {
                return ApiError::field("body", format!("the request body could not be read: {e}"))
                    .into_response()
            }
        }
    }
    if let (Some(conn), Some(mark)) = (parts.extensions.get::<InFlight>(), parts.extensions.get::<Mark>()) {
        mark.set(conn);
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// 413, and the connection closed after it (its body was not read).
fn too_large(message: String) -> Response {
    let mut r = ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message).into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Read and discard what is left of a refused body, up to `max` bytes within
/// [`LINGER`], so that a client still sending it reads the 413 rather than a
/// reset; then the connection closes.
fn linger(mut stream: BodyDataStream, max: usize) {
    tokio::spawn(async move {
        let mut left = max;
        let _ = tokio::time::timeout(LINGER, async {
            while let Some(Ok(c)) = stream.next().await {
                if c.len() >= left {
                    break;
                }
                left -= c.len();
            }
        })
        .await;
    });
}

/// Requests of one connection received whole and not yet answered.
#[derive(Clone, Default)]
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(Arc::clone(&self.0))
    }

    fn any(&self) -> bool {
        self.0.load(Ordering::SeqCst) > 0
    }
}

struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One request's place among its connection's requests in flight, taken
/// once it has been received whole.
#[derive(Clone, Default)]
struct Mark(Arc<std::sync::Mutex<Option<InFlightGuard>>>);

impl Mark {
    fn set(&self, conn: &InFlight) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.is_none() {
            *m = Some(conn.enter());
        }
    }

    fn take(&self) -> Option<InFlightGuard> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// A response body that keeps its request in flight until the connection
/// has taken all of it (and dropped it).
struct Answering {
    body: Body,
    _guard: InFlightGuard,
}

impl hyper::body::Body for Answering {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
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

/// An error's JSON with the machine's paths taken out ([`Scrub`]).
async fn scrub(s: &Scrub, response: Response) -> Response {
    if !response.status().is_client_error() && !response.status().is_server_error() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Errors are small JSON objects.
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error (an error too large to send)",
        )
        .into_response();
    };
    let bytes = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(mut v) => {
            s.json(&mut v);
            serde_json::to_vec(&v).map_or(bytes, Bytes::from)
        }
        Err(_) => Bytes::from(s.text(&String::from_utf8_lossy(&bytes))),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes))
}

/// How a connection ended at a shutdown.
enum Ended {
    /// Before the shutdown, or closed by its client or a timeout.
    Before,
    /// Closed at once: no request received whole.
    Dropped,
    /// Closed once its requests in flight were answered.
    Finished,
}

/// `serve --rebuild-stale`: every `every`, the partitions the database has
/// moved past ([`partitions::stale_partitions`], constant work each) are
/// rebuilt one at a time as `index rebuild` does (an append when the set only
/// gained rows). Queries keep answering meanwhile (`index+delta` or
/// `exact-scan`); the cache swaps the new file in at the next request.
///
/// Both the look and the rebuild read `primary`, not the replica queries
/// read: a partition rebuilt from the primary may then be ahead of the
/// replica, and queries answer from it as it is until the replica catches up.
async fn rebuild_stale(
    app: Arc<App>,
    every: Duration,
    primary: Db,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let store = Arc::clone(app.cache.store());
    loop {
        let stale = match crate::partitions::stale_partitions(&primary, &*store).await {
            Ok(stale) => stale,
            Err(e) => {
                eprintln!("warning: --rebuild-stale: cannot list stale partitions: {e}");
                Vec::new()
            }
        };
        for (model, set) in stale {
            if *stopping.borrow() {
                return;
            }
            eprintln!("--rebuild-stale: index {model} / {set} is stale; rebuilding");
            match crate::partitions::rebuild(&primary, &*store, &model, &set).await {
                Ok(built) => {
                    app.metrics.stale_rebuilds.inc();
                    let how = match built.provenance.appended_rows {
                        Some(n) => format!("appended {n} row(s)"),
                        None => "built in full".to_string(),
                    };
                    eprintln!(
                        "--rebuild-stale: index {model} / {set}: {how}, {} rows, in {:.2} s",
                        built.provenance.rows, built.provenance.build_seconds
                    );
                }
                Err(e) => eprintln!("warning: --rebuild-stale: index {model} / {set}: {e}"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}

/// Every `--refresh-secs`, a remote store reads its manifest again and
/// fetches the new version of each partition this node serves before it
/// swaps it in; then the maps of versions no longer current here (replaced,
/// dropped, evicted from the cache) are let go. A failed refresh (the
/// database or the object store down) leaves everything serving as it was.
async fn refresh(app: Arc<App>, mut stopping: tokio::sync::watch::Receiver<bool>) {
    loop {
        let store = Arc::clone(app.cache.store());
        let cache = Arc::clone(&app.cache);
        let done = tokio::task::spawn_blocking(move || {
            let r = store.refresh();
            cache.retain_current();
            r
        })
        .await;
        match done {
            Ok(Ok(r)) => {
                app.metrics.manifest_refreshes.inc();
                app.metrics.partition_prefetches.inc_by(r.prefetched as u64);
                for (model, set) in &r.swapped {
                    eprintln!("refresh: {model} / {set}: a new version is current");
                }
                for why in &r.refused {
                    eprintln!("warning: refresh: {why}");
                }
            }
            Ok(Err(e)) => {
                app.metrics.manifest_refresh_failures.inc();
                eprintln!("warning: refresh: {e}; serving the versions known before");
            }
            Err(e) => eprintln!("warning: refresh: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(app.refresh_every) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}

/// Serve on `addr` until SIGINT or SIGTERM; then stop accepting, close at
/// once every connection with no request received whole (a request head or
/// body still arriving, or idle), let the requests received whole finish
/// (for at most the request timeout and 5 s more; a second signal stops at
/// once), and return.
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
    let index_dir = app.cache.store().describe();
    let db = app.db.label().to_string();
    let header_timeout = app.limits.timeout;
    let rebuild_every = app.rebuild_stale.clone();
    let app = Arc::new(app);
    let router = router(Arc::clone(&app));
    println!("stabspace serve: listening on http://{local} (database {db}, partitions under {index_dir})");
    match &app.api_keys {
        Some(keys) => println!(
            "API keys required: {} key(s) accepted (Authorization: Bearer <key>) on every route but {}",
            keys.len(),
            api::HEALTHZ_ROUTE
        ),
        None => println!("no authentication: keep it on loopback, behind a proxy that authenticates, or use --api-key-file"),
    }
    let _ = std::io::stdout().flush();
    // Our own accept loop (axum::serve sets no timer, so hyper could not time
    // out a request head that never completes, nor an idle kept-alive
    // connection): HTTP/1.1 connections with a header read timeout, each
    // told of a shutdown.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    if app.cache.store().cache_stats().is_some() {
        println!(
            "partitions fetched from {} into a local cache; the manifest is read every {} s and new \
             versions are fetched before they are swapped in",
            app.cache.store().describe(),
            app.refresh_every.as_secs_f64()
        );
        tokio::spawn(refresh(Arc::clone(&app), stopping.clone()));
    }
    if app.recall.enabled() {
        println!(
            "checking a share of {} of the queries against an exact scan, off the request path \
             (--recall-sample; stabspace_observed_recall)",
            app.recall.fraction()
        );
        tokio::spawn(recall::record_every(Arc::clone(&app), stopping.clone()));
    }
    if let Some((every, primary)) = rebuild_every {
        println!(
            "rebuilding stale partitions in the background, one at a time, from {} (checked every {} s)",
            primary.label(),
            every.as_secs()
        );
        tokio::spawn(rebuild_stale(Arc::clone(&app), every, primary, stopping.clone()));
    }
    let mut connections = tokio::task::JoinSet::new();
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
                let in_flight = InFlight::default();
                let tagged = in_flight.clone();
                let router = router.clone();
                let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                    req.extensions_mut().insert(tagged.clone());
                    // A Router is always ready: no poll_ready needed.
                    router.clone().call(req)
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                let mut stopping = stopping.clone();
                connections.spawn(async move {
                    let mut conn = std::pin::pin!(conn);
                    tokio::select! {
                        // A client that went away is not the server's error.
                        _ = conn.as_mut() => return Ended::Before,
                        _ = stopping.wait_for(|s| *s) => {}
                    }
                    // The connection is polled only here: nothing can be received
                    // whole between this check and the drop.
                    if !in_flight.any() {
                        return Ended::Dropped;
                    }
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                    Ended::Finished
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = signals.next() => break,
        }
    }
    drop(listener);
    stop.send_replace(true);
    println!(
        "stabspace serve: shutting down: no new connections; closing those with no request received whole, \
         finishing the requests in flight"
    );
    let _ = std::io::stdout().flush();
    let ended = async {
        let (mut dropped, mut finished) = (0, 0);
        while let Some(e) = connections.join_next().await {
            match e {
                Ok(Ended::Dropped) => dropped += 1,
                Ok(Ended::Finished) => finished += 1,
                _ => {}
            }
        }
        (dropped, finished)
    };
    tokio::select! {
        (dropped, finished) = ended => {
            println!(
                "stabspace serve: stopped (requests in flight finished; {finished} connection(s) answered \
                 their last request, {dropped} closed at once with no request received whole)"
            );
        }
        () = tokio::time::sleep(drain) => {
            println!("stabspace serve: stopped after {} s with requests still open", drain.as_secs());
        }
        () = signals.next() => {
            println!("stabspace serve: stopped at a second signal");
        }
    }
    // The recall observed since the last record (best effort, bounded).
    let _ = tokio::time::timeout(Duration::from_secs(5), app.recall.record()).await;
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
