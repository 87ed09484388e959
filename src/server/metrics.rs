//! `GET /metrics`: requests by route and status, latency histograms,
//! partitions loaded, partition files swapped, partition file versions
//! whose checksums were verified, requests refused for want of an API key and
//! the recall observed on sampled queries ([`RecallMetrics`]), in the Prometheus
//! (OpenMetrics) text format, through the `prometheus-client` crate.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's pattern (`/v1/partitions/{joint_model}/{scenario_set}/search`), not the
    /// path: one series per route, whatever ids are asked for.
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

/// How a query was answered (`index`, `index+delta`, `exact-scan`) and
/// whether the partition was stale, by route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnswerLabels {
    pub route: String,
    pub answered_by: String,
    pub partition_stale: String,
}

type Latency = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// One partition: its joint model and scenario set (a bounded set: the
/// partitions this server searched).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub joint_model: String,
    pub scenario_set: String,
}

type RecallHistogram = Family<PartitionLabels, Histogram, fn() -> Histogram>;

/// `serve --recall-sample`: the recall of sampled queries against an exact
/// scan (`super::recall`).
#[derive(Clone)]
pub struct RecallMetrics {
    /// The mean recall@k of the partition's recent sampled queries.
    pub observed: Family<PartitionLabels, Gauge<f64, AtomicU64>>,
    /// The recall@k of each sampled query.
    pub per_query: RecallHistogram,
    /// Sampled queries checked, by partition.
    pub checked: Family<PartitionLabels, Counter>,
    /// Sampled queries not checked: the queue was full.
    pub dropped: Counter<u64, AtomicU64>,
    /// Sampled queries whose answer was exact already (nothing to check).
    pub exact: Counter<u64, AtomicU64>,
}

fn recall_histogram() -> Histogram {
    Histogram::new([0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 1.0])
}

impl RecallMetrics {
    fn register(registry: &mut Registry) -> RecallMetrics {
        let observed = Family::<PartitionLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "observed_recall",
            "Mean recall@k of the partition's last sampled queries (serve --recall-sample), each re-run as \
             an exact scan of the same rows off the request path",
            observed.clone(),
        );
        let per_query: RecallHistogram = Family::new_with_constructor(recall_histogram as fn() -> Histogram);
        registry.register(
            "query_recall",
            "Recall@k of each sampled query against an exact scan of the same rows",
            per_query.clone(),
        );
        let checked = Family::<PartitionLabels, Counter>::default();
        registry.register(
            "recall_samples",
            "Sampled queries checked against an exact scan, by partition",
            checked.clone(),
        );
        RecallMetrics {
            observed,
            per_query,
            checked,
            dropped: counter(
                registry,
                "recall_samples_dropped",
                "Sampled queries not checked because the queue of checks was full (the checks' CPU budget)",
            ),
            exact: counter(
                registry,
                "recall_samples_exact",
                "Sampled queries not checked because their answer was exact already (flat partition, \
                 exact, a scan)",
            ),
        }
    }
}

pub struct Metrics {
    registry: Mutex<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Latency,
    pub partitions_loaded: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub partition_reloads: Counter<u64, AtomicU64>,
    pub partition_verifications: Counter<u64, AtomicU64>,
    pub answers: Family<AnswerLabels, Counter>,
    /// Stale partitions rebuilt by `serve --rebuild-stale`.
    pub stale_rebuilds: Counter<u64, AtomicU64>,
    /// Requests refused for want of a valid API key (`--api-key-file`), by route template.
    pub unauthorized: Family<RouteLabels, Counter>,
    /// A remote partition store's manifest read (`--refresh-secs`), and failed reads.
    pub manifest_refreshes: Counter<u64, AtomicU64>,
    pub manifest_refresh_failures: Counter<u64, AtomicU64>,
    /// New versions fetched by a refresh before they were swapped in.
    pub partition_prefetches: Counter<u64, AtomicU64>,
    /// The local cache of a remote store ([`crate::partitions::CacheStats`]).
    cache: CacheMetrics,
    /// The recall observed on sampled queries.
    pub recall: RecallMetrics,
}

/// The fetched-partition cache's figures, mirrored at each scrape.
#[derive(Default)]
struct CacheMetrics {
    bytes: Gauge<i64, std::sync::atomic::AtomicI64>,
    budget: Gauge<i64, std::sync::atomic::AtomicI64>,
    hits: Counter<u64, AtomicU64>,
    fetches: Counter<u64, AtomicU64>,
    fetched_bytes: Counter<u64, AtomicU64>,
    failures: Counter<u64, AtomicU64>,
    evictions: Counter<u64, AtomicU64>,
    last_fetch: Gauge<f64, AtomicU64>,
    seen: Mutex<crate::partitions::CacheStats>,
}

/// A plain counter, registered.
fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter<u64, AtomicU64> {
    let c = Counter::default();
    registry.register(name, help, c.clone());
    c
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 105 s (beyond the default 30 s timeout), doubling.
    Histogram::new(exponential_buckets(50e-6, 2.0, 22))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("stabspace");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        let latency: Latency = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its response, by route",
            latency.clone(),
        );
        let partitions_loaded = Gauge::default();
        registry.register(
            "partitions_loaded",
            "Index partitions open in this server",
            partitions_loaded.clone(),
        );
        let partition_reloads = counter(
            &mut registry,
            "partition_reloads",
            "Partition files found replaced (a rebuild) and opened again",
        );
        let partition_verifications = counter(
            &mut registry,
            "partition_verifications",
            "Partition file versions whose checksums were read and checked (once per version, in the \
             background)",
        );
        let answers = Family::<AnswerLabels, Counter>::default();
        registry.register(
            "answers",
            "Scenario queries answered, by route, by how (index, index+delta, exact-scan) and whether \
             the partition was stale",
            answers.clone(),
        );
        let stale_rebuilds = counter(
            &mut registry,
            "stale_rebuilds",
            "Stale partitions rebuilt in the background (serve --rebuild-stale)",
        );
        let unauthorized = Family::<RouteLabels, Counter>::default();
        registry.register(
            "unauthorized",
            "Requests refused with 401 for want of a valid API key (serve --api-key-file), by route",
            unauthorized.clone(),
        );
        let manifest_refreshes = counter(
            &mut registry,
            "manifest_refreshes",
            "Reads of the remote partition store's manifest (serve --refresh-secs)",
        );
        let manifest_refresh_failures = counter(
            &mut registry,
            "manifest_refresh_failures",
            "Manifest reads that failed (the versions known before kept serving)",
        );
        let partition_prefetches = counter(
            &mut registry,
            "partition_prefetches",
            "New partition versions fetched by a refresh before they were swapped in",
        );
        let cache = CacheMetrics::default();
        for (name, help, metric) in [
            (
                "partition_cache_hits",
                "Partition lookups (one per query) of a version the local cache holds",
                &cache.hits,
            ),
            (
                "partition_fetches",
                "Partition versions downloaded (verified) into the local cache",
                &cache.fetches,
            ),
            (
                "partition_fetched_bytes",
                "Bytes of partition versions downloaded",
                &cache.fetched_bytes,
            ),
            (
                "partition_fetch_failures",
                "Partition downloads that failed or were refused (length or SHA-256 mismatch)",
                &cache.failures,
            ),
            (
                "partition_cache_evictions",
                "Partition versions evicted from the local cache (least recently used, past --cache-max-gb)",
                &cache.evictions,
            ),
        ] {
            registry.register(name, help, metric.clone());
        }
        registry.register(
            "partition_cache_bytes",
            "Bytes of partition versions in the local cache",
            cache.bytes.clone(),
        );
        registry.register(
            "partition_cache_budget_bytes",
            "The local cache's budget (--cache-max-gb)",
            cache.budget.clone(),
        );
        registry.register(
            "partition_last_fetch_seconds",
            "Seconds the last partition download took",
            cache.last_fetch.clone(),
        );
        let recall = RecallMetrics::register(&mut registry);
        Metrics {
            recall,
            manifest_refreshes,
            manifest_refresh_failures,
            partition_prefetches,
            cache,
            unauthorized,
            answers,
            stale_rebuilds,
            registry: Mutex::new(registry),
            requests,
            latency,
            partitions_loaded,
            partition_reloads,
            partition_verifications,
        }
    }

    /// Count one answer of `route`.
    pub fn count_answer(&self, route: &str, answer: crate::nearest::Answer) {
        self.answers
            .get_or_create(&AnswerLabels {
                route: route.to_string(),
                answered_by: answer.by.label().to_string(),
                partition_stale: answer.partition_stale.to_string(),
            })
            .inc();
    }

    /// Mirror the figures of a remote store's cache (`None`: a local store).
    pub fn observe_cache(&self, now: Option<crate::partitions::CacheStats>) {
        let Some(now) = now else { return };
        let c = &self.cache;
        let mut seen = c.seen.lock().unwrap_or_else(|e| e.into_inner());
        c.hits.inc_by(now.hits.saturating_sub(seen.hits));
        c.fetches.inc_by(now.fetches.saturating_sub(seen.fetches));
        c.fetched_bytes
            .inc_by(now.fetched_bytes.saturating_sub(seen.fetched_bytes));
        c.failures
            .inc_by(now.fetch_failures.saturating_sub(seen.fetch_failures));
        c.evictions.inc_by(now.evictions.saturating_sub(seen.evictions));
        c.bytes.set(now.resident_bytes as i64);
        c.budget.set(now.budget_bytes as i64);
        c.last_fetch.set(now.last_fetch_seconds);
        *seen = now;
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
