//! `stabspace serve` on a real loopback port, over real databases and
//! partition files: answers equal the CLI's (both backends), bad requests get
//! a JSON 4xx naming the field (bad ids, nulls, trailing bytes, a body above
//! the limit at once) and no answer names a path of the machine, a partition
//! rebuilt under load fails no request, `GET /v1/partitions` verifies each
//! file version once in the background, metrics count what was served,
//! SIGTERM closes what was not received whole and finishes what was, and
//! `--api-key-file` refuses every route but `/healthz` without a key (401,
//! before the body is read or a turn taken), never showing a key.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stabspace_index::Partition;

use crate::both_backends;
use crate::support::{text, TestDb};

pub(crate) const MODEL: &str = "joint-stab-fragility-v2";
const FLAT_SET: &str = "HIST_CRASH_WINDOWS";
pub(crate) const GRAPH_SET: &str = "GEN_BIG";
/// A generated set below the graph threshold.
const SMALL_SET: &str = "GEN_SMALL";

/// Run the CLI on the test database; assert success; stdout.
pub(crate) fn cli(t: &TestDb, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_stabspace"))
        .args(args)
        .args(["--database-url", &t.url])
        .env_remove("DATABASE_URL")
        .env_remove("STABSPACE_READ_DATABASE_URL")
        .env("STABSPACE_DATA_DIR", t.dir.path())
        .output()
        .expect("run stabspace");
    assert!(
        out.status.success(),
        "stabspace {args:?} failed:\n{}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// What the queries need: the demo's market and a generated set above the flat threshold.
pub(crate) struct Market {
    pub(crate) day: String,
    pub(crate) instrument: String,
    pub(crate) portfolio: String,
}

pub(crate) fn market(t: &TestDb) -> Market {
    cli(t, &["demo", "--instruments", "24", "--days", "320"]);
    cli(
        t,
        &[
            "gen-scenarios",
            "--scenario-set-id",
            GRAPH_SET,
            "--count",
            "3000",
            "--model-id",
            MODEL,
        ],
    );
    let states: Vec<Value> = serde_json::from_str(&cli(
        t,
        &[
            "show-joint-stab-fragility-states",
            "--start",
            "2000-01-01",
            "--end",
            "2100-01-01",
            "--model-id",
            MODEL,
            "--format",
            "json",
        ],
    ))
    .expect("states as JSON");
    let day = states
        .iter()
        .filter_map(|s| s["as_of_date"].as_str())
        .max()
        .expect("states")
        .to_string();
    let instrument = states
        .iter()
        .find(|s| s["as_of_date"] == day.as_str())
        .and_then(|s| s["instrument_id"].as_str())
        .expect("an instrument")
        .to_string();
    let portfolios =
        std::fs::read_to_string(t.dir.path().join("demo/portfolios.csv")).expect("demo portfolios");
    let portfolio = portfolios
        .lines()
        .nth(1)
        .and_then(|l| l.split(',').next())
        .expect("a portfolio")
        .to_string();
    Market {
        day,
        instrument,
        portfolio,
    }
}

/// A running `stabspace serve`, killed when dropped.
pub(crate) struct Server {
    child: Child,
    base: String,
    stderr: Receiver<String>,
    stdout: Arc<Mutex<Vec<String>>>,
    stdout_reader: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub(crate) fn start(t: &TestDb, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stabspace"))
            .args(["serve", "--addr", "127.0.0.1:0", "--database-url", &t.url])
            .args(extra)
            .env_remove("DATABASE_URL")
            .env_remove("STABSPACE_READ_DATABASE_URL")
            .env("STABSPACE_DATA_DIR", t.dir.path())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start stabspace serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().expect("a first line").expect("stdout");
        let base = first
            .split("listening on ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_string();
        let stdout = Arc::new(Mutex::new(vec![first]));
        let sink = Arc::clone(&stdout);
        let stdout_reader = Some(std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(l);
            }
        }));
        let (tx, stderr) = channel();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Server {
            child,
            base,
            stderr,
            stdout,
            stdout_reader,
        }
    }

    /// Everything the server printed on stdout, once it has exited.
    fn output(&mut self) -> String {
        if let Some(r) = self.stdout_reader.take() {
            r.join().expect("stdout reader");
        }
        self.stdout.lock().unwrap().join("\n")
    }

    /// Wait for a stderr line containing `text`.
    pub(crate) fn await_stderr(&self, text: &str) -> String {
        let until = Instant::now() + Duration::from_secs(30);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(l) if l.contains(text) => return l,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("the server never said {text:?} on stderr");
    }

    /// The stderr lines received so far that were not awaited.
    pub(crate) fn stderr_so_far(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then the exit status (a hang guard of 20 s).
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        self.terminate_within(Duration::from_secs(20))
    }

    /// SIGTERM, then the exit status; `guard` only stops a test that hangs.
    fn terminate_within(&mut self, guard: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success());
        let until = Instant::now() + guard;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                Instant::now() < until,
                "the server had not exited {guard:?} after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the server dies at once, whatever it holds.
    pub(crate) fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        let _ = self.child.wait();
    }

    /// host:port.
    pub(crate) fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Client threads that search in a loop until [`Load::finish`]: a request
/// counts as answered when it is a 200 with `k` hits; anything else is kept
/// as a failure. Thread `c` asks `urls[c % urls.len()]`.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    pub(crate) fn start(
        clients: usize,
        urls: &[String],
        auth: Option<&str>,
        queries: Arc<Vec<Vec<f32>>>,
        k: usize,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|c| {
                let (url, auth) = (urls[c % urls.len()].clone(), auth.map(str::to_string));
                let (stop, ok, failed, queries) = (
                    Arc::clone(&stop),
                    Arc::clone(&ok),
                    Arc::clone(&failed),
                    Arc::clone(&queries),
                );
                std::thread::spawn(move || {
                    let a = agent();
                    let mut i = c;
                    while !stop.load(Ordering::Relaxed) {
                        let body = json!({"vector": queries[i % queries.len()], "k": k});
                        let (status, got, _) = ask(&a, "POST", &url, auth.as_deref(), Some(&body));
                        let hits = serde_json::from_str::<Value>(&got)
                            .ok()
                            .and_then(|v| v["hits"].as_array().map(Vec::len));
                        if status == 200 && hits == Some(k) {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failed.lock().unwrap().push(format!("{status}: {got}"));
                        }
                        i += clients;
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            threads,
        }
    }

    /// Requests answered so far.
    pub(crate) fn answered(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Wait (at most 60 s) until `n` requests have been answered.
    pub(crate) fn wait_for(&self, n: usize) {
        let until = Instant::now() + Duration::from_secs(60);
        while self.answered() < n {
            assert!(
                Instant::now() < until,
                "the clients stalled at {} answers",
                self.answered()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stop the clients; (answered, failures).
    pub(crate) fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("client thread");
        }
        let failed = std::mem::take(&mut *self.failed.lock().unwrap());
        (self.ok.load(Ordering::Relaxed), failed)
    }
}

/// One unlabelled metric of a server's `/metrics` (`None`: not there).
pub(crate) fn metric(s: &Server, auth: Option<&str>, name: &str) -> Option<f64> {
    let (status, m, _) = ask(&agent(), "GET", &s.url("/metrics"), auth, None);
    assert_eq!(status, 200, "{m}");
    m.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} {v} is not a number")))
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// POST a JSON body; (status, JSON answer).
pub(crate) fn post(a: &ureq::Agent, url: &str, body: &Value) -> (u16, Value) {
    let mut r = a.post(url).send_json(body).expect("request");
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")),
    )
}

/// An answer that is a 400 naming `field`, its message holding `says`.
pub(crate) fn bad_field((status, got): &(u16, Value), field: &str, says: &str) {
    assert_eq!(
        (*status, got["error"]["field"].as_str()),
        (400, Some(field)),
        "{got}"
    );
    let message = got["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{got}");
}

fn post_raw(a: &ureq::Agent, url: &str, body: &str) -> (u16, Value) {
    let mut r = a
        .post(url)
        .header("content-type", "application/json")
        .send(body)
        .expect("request");
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")),
    )
}

pub(crate) fn get(a: &ureq::Agent, url: &str) -> (u16, String) {
    let mut r = a.get(url).call().expect("request");
    (r.status().as_u16(), r.body_mut().read_to_string().expect("body"))
}

pub(crate) fn search_url(s: &Server, set: &str) -> String {
    s.url(&format!("/v1/partitions/{MODEL}/{set}/search"))
}

fn graph_partition(t: &TestDb) -> Partition {
    Partition::open(
        t.dir
            .path()
            .join("index")
            .join(MODEL)
            .join(format!("{GRAPH_SET}.stabidx")),
    )
    .expect("partition")
}

/// A partition row as the caller gave it (the unit vector times its norm).
pub(crate) fn row_vector(p: &Partition, row: usize) -> Vec<f32> {
    let n = p.norms()[row];
    p.vector(row).iter().map(|&x| (f64::from(x) * n) as f32).collect()
}

both_backends!(unmigrated: answers_equal_the_cli);

async fn answers_equal_the_cli(t: TestDb) {
    let m = market(&t);
    let s = Server::start(&t, &[], &[]);
    let a = agent();
    for set in [FLAT_SET, GRAPH_SET] {
        for exact in [false, true] {
            let mut args = vec![
                "find-similar-stab-scenarios",
                "--instrument-id",
                &m.instrument,
                "--as-of",
                &m.day,
                "--scenario-set-id",
                set,
                "--top-k",
                "10",
                "--model-id",
                MODEL,
                "--format",
                "json",
            ];
            if exact {
                args.push("--exact");
            }
            let want: Value = serde_json::from_str(&cli(&t, &args)).unwrap();
            let body = json!({"instrument_id": m.instrument, "as_of": m.day, "model_id": MODEL,
                              "scenario_set_id": set, "top_k": 10, "exact": exact});
            let (status, got) = post(&a, &s.url("/v1/similar-scenarios"), &body);
            assert_eq!(status, 200, "{got}");
            assert_eq!(got["hits"], want, "similar-scenarios on {set}, exact {exact}");
            assert_eq!(
                want.as_array().unwrap().len(),
                if set == FLAT_SET { 6 } else { 10 }
            );
        }
        let want: Value = serde_json::from_str(&cli(
            &t,
            &[
                "show-portfolio-stab-scenario-exposure",
                "--portfolio-id",
                &m.portfolio,
                "--as-of",
                &m.day,
                "--scenario-set-id",
                set,
                "--top-k",
                "7",
                "--stab-model-id",
                MODEL,
                "--format",
                "json",
            ],
        ))
        .unwrap();
        let body = json!({"portfolio_id": m.portfolio, "as_of": m.day, "scenario_set_id": set,
                          "stab_model_id": MODEL, "top_k": 7});
        let (status, got) = post(&a, &s.url("/v1/portfolio-exposure"), &body);
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["hits"], want, "portfolio-exposure on {set}");
    }
    // The workflows searched the two sets' partitions through the server's shared maps.
    let (_, metrics) = get(&a, &s.url("/metrics"));
    assert!(
        metrics.lines().any(|l| l == "stabspace_partitions_loaded 2"),
        "{metrics}"
    );
    // GET /v1/partitions is `index status`, once the checksums are verified.
    let want: Value = serde_json::from_str(&cli(&t, &["index", "status", "--format", "json"])).unwrap();
    let got = settled_partitions(&a, &s);
    assert!(got.iter().all(|r| r["checksums"] == "ok"), "{got:?}");
    assert_eq!(without_checksums(&got), want);
    // The raw search route answers as the partition does in process.
    let p = graph_partition(&t);
    let q = row_vector(&p, 7);
    let (status, got) = post(&a, &search_url(&s, GRAPH_SET), &json!({"vector": q, "k": 5}));
    assert_eq!(status, 200, "{got}");
    let ef = got["ef"].as_u64().expect("a graph search reports its ef") as usize;
    let want = p.search(&q, 5, ef).unwrap();
    let hits = got["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 5);
    for (h, w) in hits.iter().zip(&want) {
        assert_eq!(h["scenario_id"], w.id.as_str());
        assert_eq!(h["cosine"].as_f64().unwrap(), w.cosine);
        assert_eq!(h["euclidean"].as_f64().unwrap(), w.euclidean);
        assert_eq!(h["scenario_as_of"], "2020-03-16");
    }
    let qs = [row_vector(&p, 1), row_vector(&p, 2), row_vector(&p, 3)];
    let (status, got) = post(
        &a,
        &search_url(&s, GRAPH_SET),
        &json!({"vectors": qs, "k": 3, "exact": true}),
    );
    assert_eq!(status, 200, "{got}");
    assert!(got["ef"].is_null());
    let results = got["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for (r, q) in results.iter().zip(&qs) {
        let want = p.search_exact(q, 3).unwrap();
        let ids: Vec<&str> = r["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["scenario_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, want.iter().map(|h| h.id.as_str()).collect::<Vec<_>>());
    }
}

both_backends!(unmigrated: bad_requests_get_a_json_4xx_naming_the_field);

async fn bad_requests_get_a_json_4xx_naming_the_field(t: TestDb) {
    let m = market(&t);
    let s = Server::start(&t, &["--max-body-mb", "1", "--max-k", "50"], &[]);
    let a = agent();
    let url = search_url(&s, GRAPH_SET);
    let p = graph_partition(&t);
    let q = row_vector(&p, 0);
    let mut huge = q.clone();
    huge.truncate(383);
    let cases: Vec<(String, u16, &str, &str)> = vec![
        // Where the parse stopped.
        ("{\"vector\": [1, 2".into(), 400, "vector", "malformed JSON: EOF"),
        ("{\"vector\" [1, 2]}".into(), 400, "body", "malformed JSON"),
        ("[1, 2, 3]".into(), 400, "body", "expected a JSON object"),
        // JSON has no NaN: the literal is malformed JSON.
        (
            format!("{{\"vector\": [NaN{}]}}", ", 1".repeat(383)),
            400,
            "vector[0]",
            "malformed JSON",
        ),
        ("".into(), 400, "body", "expected a JSON object"),
        (
            json!({"vector": huge}).to_string(),
            400,
            "vector",
            "has 383 components; the partition's vectors have 384",
        ),
        (
            json!({"vector": vec![0.0; 384]}).to_string(),
            400,
            "vector",
            "all zeros",
        ),
        (
            format!("{{\"vector\": [1e39{}]}}", ", 1".repeat(383)),
            400,
            "vector[0]",
            "not a finite float32",
        ),
        (
            format!("{{\"vector\": [1, \"x\"{}]}}", ", 1".repeat(382)),
            400,
            "vector[1]",
            "invalid type: string",
        ),
        (
            json!({"vector": q, "k": 0}).to_string(),
            400,
            "k",
            "must be at least 1, got 0",
        ),
        (
            json!({"vector": q, "k": 51}).to_string(),
            400,
            "k",
            "above the server's limit of 50",
        ),
        (json!({"vector": q, "ef": 0}).to_string(), 400, "ef", "at least 1"),
        (
            json!({"vector": q, "recall": 1.5}).to_string(),
            400,
            "recall",
            "between 0",
        ),
        (
            json!({"vector": q, "ef": 10, "recall": 0.9}).to_string(),
            400,
            "ef",
            "not both",
        ),
        (
            json!({"vector": q, "exact": true, "ef": 10}).to_string(),
            400,
            "exact",
            "no ef or recall",
        ),
        (
            json!({"vector": q, "vectors": [q]}).to_string(),
            400,
            "vector",
            "not both",
        ),
        (json!({"k": 3}).to_string(), 400, "vector", "missing"),
        (json!({"vectors": []}).to_string(), 400, "vectors", "is empty"),
        (
            json!({"vectors": [q, vec![1.0; 3]]}).to_string(),
            400,
            "vectors[1]",
            "has 3 components",
        ),
        (
            json!({"vector": q, "kk": 3}).to_string(),
            400,
            "kk",
            "unknown field",
        ),
    ];
    for (body, status, field, message) in &cases {
        let (got_status, got) = post_raw(&a, &url, body);
        assert_eq!(got_status, *status, "{body:.80}: {got}");
        assert_eq!(got["error"]["field"], *field, "{body:.80}: {got}");
        let text = got["error"]["message"].as_str().unwrap();
        assert!(text.contains(message), "{body:.80}: {text:?} lacks {message:?}");
    }
    // A path segment that is not UTF-8.
    let (status, got) = post(
        &a,
        &s.url(&format!("/v1/partitions/%FF/{GRAPH_SET}/search")),
        &json!({"vector": q}),
    );
    bad_field(&(status, got), "path", "");
    // Unknown partition: 404.
    let (status, got) = post(&a, &search_url(&s, "NO_SUCH_SET"), &json!({"vector": q}));
    assert_eq!(status, 404, "{got}");
    assert!(got["error"]["message"].as_str().unwrap().contains("NO_SUCH_SET"));
    // A body above --max-body-mb 1: 413.
    // Just above the limit: the server answers without reading it all, and a
    // body much larger than the socket buffers could be cut off mid-write.
    let row = format!("[{}]", vec!["0.123456789"; 384].join(","));
    let big = format!("{{\"vectors\": [{}]}}", vec![row; 240].join(","));
    assert!(
        big.len() > 1 << 20 && big.len() < (1 << 20) + (1 << 17),
        "{}",
        big.len()
    );
    let (status, got) = post_raw(&a, &url, &big);
    assert_eq!(status, 413, "{got}");
    // The workflow routes name their fields too.
    let similar = s.url("/v1/similar-scenarios");
    let (status, got) = post(
        &a,
        &similar,
        &json!({"as_of": m.day, "scenario_set_id": FLAT_SET}),
    );
    bad_field(&(status, got), "body", "instrument_id");
    let (status, got) = post(
        &a,
        &similar,
        &json!({"instrument_id": m.instrument, "as_of": "31/01/2023", "scenario_set_id": FLAT_SET}),
    );
    bad_field(&(status, got), "as_of", "");
    let (status, got) = post(
        &a,
        &similar,
        &json!({"instrument_id": "NOPE.US", "as_of": m.day, "scenario_set_id": FLAT_SET}),
    );
    assert_eq!(status, 422, "{got}");
    assert!(
        got["error"]["message"].as_str().unwrap().contains("NOPE.US"),
        "{got}"
    );
    let (status, got) = post(
        &a,
        &s.url("/v1/portfolio-exposure"),
        &json!({"portfolio_id": m.portfolio, "as_of": m.day, "scenario_set_id": FLAT_SET, "top_k": -1}),
    );
    bad_field(&(status, got), "top_k", "");
    // Unknown routes and methods: JSON too.
    let (status, body) = get(&a, &s.url("/v2/nothing"));
    assert_eq!(status, 404);
    assert!(body.contains("no route GET /v2/nothing"), "{body}");
    let (status, body) = get(&a, &search_url(&s, GRAPH_SET));
    assert_eq!(status, 405, "{body}");
    // Still serving.
    assert_eq!(get(&a, &s.url("/healthz")).0, 200);
    let (status, _) = post(&a, &url, &json!({"vector": q}));
    assert_eq!(status, 200);
}

both_backends!(unmigrated: a_partition_rebuilt_under_load_fails_no_request);

async fn a_partition_rebuilt_under_load_fails_no_request(t: TestDb) {
    market(&t);
    let s = Server::start(&t, &[], &[]);
    let p = graph_partition(&t);
    let queries: Arc<Vec<Vec<f32>>> = Arc::new((0..50).map(|r| row_vector(&p, r * 7)).collect());
    let url = search_url(&s, GRAPH_SET);
    let load = Load::start(4, std::slice::from_ref(&url), None, Arc::clone(&queries), 5);
    // Load running; then two rebuilds, each followed by more answered requests
    // (so that each new file is seen).
    load.wait_for(20);
    let before = load.answered();
    for m in ["8", "12"] {
        cli(
            &t,
            &[
                "index",
                "build",
                "--model-id",
                MODEL,
                "--scenario-set-id",
                GRAPH_SET,
                "--m",
                m,
            ],
        );
        load.wait_for(load.answered() + 20);
    }
    let (ok, failed) = load.finish();
    assert!(
        failed.is_empty(),
        "{} requests failed during the swaps, first: {}",
        failed.len(),
        failed[0]
    );
    assert!(
        ok > before && before > 0,
        "requests before the swaps {before}, in all {ok}"
    );
    // The server serves the new file, and says it swapped.
    let a = agent();
    let (_, status) = get(&a, &s.url("/v1/partitions"));
    let status: Value = serde_json::from_str(&status).unwrap();
    let row = status["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["scenario_set_id"] == GRAPH_SET)
        .unwrap();
    assert_eq!(row["m"], 12);
    // A breadth of a third of the rows: the row's own vector finds the row.
    let (status, got) = post(&a, &url, &json!({"vector": queries[0], "k": 1, "ef": 1000}));
    assert_eq!(status, 200);
    assert_eq!(got["hits"][0]["scenario_id"], p.id(0).unwrap());
    let (_, metrics) = get(&a, &s.url("/metrics"));
    let reloads: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("stabspace_partition_reloads_total "))
        .expect("a reload counter")
        .parse()
        .unwrap();
    assert!(reloads >= 2.0, "reloads {reloads}:\n{metrics}");
}

both_backends!(unmigrated: metrics_count_requests_and_sigterm_finishes_requests_in_flight);

async fn metrics_count_requests_and_sigterm_finishes_requests_in_flight(t: TestDb) {
    market(&t);
    let p = graph_partition(&t);
    let q = row_vector(&p, 3);
    {
        let s = Server::start(&t, &[], &[]);
        let a = agent();
        let url = search_url(&s, GRAPH_SET);
        for _ in 0..3 {
            assert_eq!(post(&a, &url, &json!({"vector": q})).0, 200);
        }
        assert_eq!(post(&a, &url, &json!({"vector": q, "k": 0})).0, 400);
        let mut r = a.get(s.url("/metrics")).call().unwrap();
        let kind = r
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
        let m = r.body_mut().read_to_string().unwrap();
        let route = "/v1/partitions/{joint_model}/{scenario_set}/search";
        for line in [
            format!("stabspace_http_requests_total{{route=\"{route}\",method=\"POST\",status=\"200\"}} 3"),
            format!("stabspace_http_requests_total{{route=\"{route}\",method=\"POST\",status=\"400\"}} 1"),
            format!("stabspace_http_request_duration_seconds_count{{route=\"{route}\"}} 4"),
            "stabspace_partitions_loaded 1".to_string(),
            "stabspace_partition_reloads_total 0".to_string(),
        ] {
            assert!(m.lines().any(|l| l == line), "no line {line:?} in\n{m}");
        }
        assert!(
            m.contains("stabspace_http_request_duration_seconds_bucket{le="),
            "{m}"
        );
    }
    // SIGTERM with a request in flight: it is answered, then the server exits 0.
    let mut s = Server::start(
        &t,
        &[],
        &[(
            stabspace::faults::PAUSE_AT_ENV,
            stabspace::faults::SERVE_SEARCH_HELD,
        )],
    );
    let url = search_url(&s, GRAPH_SET);
    // Exact, so that the row's own vector finds the row whatever the graph
    // (a graph search at the calibrated breadth may miss it).
    let body = json!({"vector": q, "k": 3, "exact": true});
    let in_flight = std::thread::spawn(move || post(&agent(), &url, &body));
    s.await_stderr("held at serve:search-held");
    let status = s.terminate();
    assert!(status.success(), "exit status {status}");
    let (code, got) = in_flight.join().expect("client");
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["hits"][0]["scenario_id"], p.id(3).unwrap());
    let out = s.output();
    assert!(
        out.contains("stopped (requests in flight finished; 1 connection(s) answered their last request"),
        "{out}"
    );
    assert!(
        ureq::get(s.url("/healthz")).call().is_err(),
        "the server still accepts connections"
    );
    // A request held past --timeout-secs is answered 408, as a JSON error.
    let s = Server::start(
        &t,
        &["--timeout-secs", "1"],
        &[(
            stabspace::faults::PAUSE_AT_ENV,
            stabspace::faults::SERVE_SEARCH_HELD,
        )],
    );
    let (status, got) = post(&agent(), &search_url(&s, GRAPH_SET), &json!({"vector": q}));
    assert_eq!(status, 408, "{got}");
    assert!(
        got["error"]["message"].as_str().unwrap().contains("within 1 s"),
        "{got}"
    );
    assert_eq!(get(&agent(), &s.url("/healthz")).0, 200);
    // A request head that never completes, and a connection left idle, are
    // closed by the server after the timeout (1 s; the read timeout is a hang
    // guard); a shutdown does not wait for them.
    use std::io::Write;
    let addr = s.addr();
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(b"POST /v1/partitions HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let idle = std::net::TcpStream::connect(&addr).unwrap();
    for (what, c) in [("a half-sent request head", slow), ("an idle connection", idle)] {
        assert!(
            closed_by_server(c, Duration::from_secs(60)).is_some(),
            "{what}: still open"
        );
    }
    let mut s = s;
    let _open = std::net::TcpStream::connect(&addr).unwrap();
    assert!(s.terminate().success());
    let out = s.output();
    assert!(
        out.contains("stopped (requests in flight finished; 0 connection(s) answered their last request"),
        "{out}"
    );
}

/// Read `c` until the server closes it (end of stream or a reset): what it
/// sent, or `None` when it is still open after `guard` (a hang guard).
fn closed_by_server(mut c: std::net::TcpStream, guard: Duration) -> Option<Vec<u8>> {
    use std::io::{ErrorKind, Read};
    c.set_read_timeout(Some(guard)).unwrap();
    let mut got = Vec::new();
    match c.read_to_end(&mut got) {
        Ok(_) => Some(got),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(_) => Some(got),
    }
}

/// Write `request` on a new connection; what the server answered before it
/// closed the connection (a hang guard of 60 s).
fn exchange(addr: &str, request: &[u8]) -> String {
    use std::io::Write;
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(request).unwrap();
    let got = closed_by_server(c, Duration::from_secs(60)).expect("the server closed the connection");
    String::from_utf8_lossy(&got).into_owned()
}

/// `gen-scenarios` of `count` rows into `set` (and its partition, unless `extra` says --no-index).
pub(crate) fn generate(t: &TestDb, set: &str, count: usize, extra: &[&str]) {
    let count = count.to_string();
    let mut args = vec![
        "gen-scenarios",
        "--scenario-set-id",
        set,
        "--count",
        &count,
        "--model-id",
        MODEL,
    ];
    args.extend_from_slice(extra);
    cli(t, &args);
}

pub(crate) fn partition_file(t: &TestDb, set: &str) -> std::path::PathBuf {
    t.dir
        .path()
        .join("index")
        .join(MODEL)
        .join(format!("{set}.stabidx"))
}

/// `GET /v1/partitions`: (its rows, the body as sent).
pub(crate) fn partitions(a: &ureq::Agent, s: &Server) -> (Vec<Value>, String) {
    let (status, body) = get(a, &s.url("/v1/partitions"));
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    (v["partitions"].as_array().expect("partitions").clone(), body)
}

/// `GET /v1/partitions` once no file's checksums are pending (a hang guard of 60 s).
fn settled_partitions(a: &ureq::Agent, s: &Server) -> Vec<Value> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (rows, _) = partitions(a, s);
        if !rows.iter().any(|r| r["checksums"] == "pending") {
            return rows;
        }
        assert!(Instant::now() < until, "checksums still pending: {rows:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The rows as `index status --format json` has them: without the
/// checksums and the recall this server observed live.
fn without_checksums(rows: &[Value]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                let mut r = r.clone();
                let o = r.as_object_mut().unwrap();
                for field in [
                    "checksums",
                    "observed_recall",
                    "recall_samples",
                    "recall_target",
                    "recall_warning",
                ] {
                    o.remove(field).unwrap_or_else(|| panic!("no {field} field"));
                }
                r
            })
            .collect(),
    )
}

fn row<'a>(rows: &'a [Value], set: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["scenario_set_id"] == set)
        .unwrap_or_else(|| panic!("no row for {set} in {rows:?}"))
}

/// A counter's value on `/metrics`.
fn counter(a: &ureq::Agent, s: &Server, name: &str) -> f64 {
    let (_, m) = get(a, &s.url("/metrics"));
    m.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in\n{m}"))
        .parse()
        .unwrap()
}

/// Damage a byte of the first section's data (the vectors): a new file version
/// (written beside, renamed over) whose header and section table still open.
fn damage(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[1024 + 100] ^= 0x5a;
    let tmp = path.with_extension("damaged");
    std::fs::write(&tmp, &bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

both_backends!(unmigrated: partitions_route_verifies_each_file_version_once_off_the_request_path);

async fn partitions_route_verifies_each_file_version_once_off_the_request_path(t: TestDb) {
    generate(&t, GRAPH_SET, 3000, &[]);
    generate(&t, SMALL_SET, 50, &[]);
    let s = Server::start(&t, &[], &[]);
    let a = agent();
    let verified = || counter(&a, &s, "stabspace_partition_verifications_total");
    let status =
        || -> Value { serde_json::from_str(&cli(&t, &["index", "status", "--format", "json"])).unwrap() };
    // Each file verified once, in the background; then the rows are `index status`'s.
    let rows = settled_partitions(&a, &s);
    assert!(rows.iter().all(|r| r["checksums"] == "ok"), "{rows:?}");
    assert_eq!(without_checksums(&rows), status());
    assert_eq!(verified(), 2.0);
    // The database moves on, the files do not: the rows follow the database
    // (`index status`'s again), and no file is read again.
    generate(&t, GRAPH_SET, 3050, &["--no-index"]);
    let (rows, _) = partitions(&a, &s);
    let big = row(&rows, GRAPH_SET);
    assert_eq!(
        (&big["state"], &big["next_rebuild"], &big["checksums"]),
        (&json!("stale"), &json!("append 50 row(s)"), &json!("ok")),
        "{big}"
    );
    assert_eq!(without_checksums(&rows), status());
    assert_eq!(verified(), 2.0);
    // A damaged section in a new version of a file: verified once, in the
    // background, and then reported unreadable, as `index status` reports it
    // (with the path relative to the data directory).
    damage(&partition_file(&t, SMALL_SET));
    let rows = settled_partitions(&a, &s);
    let small = row(&rows, SMALL_SET);
    let data_dir = format!("{}/", t.dir.path().display());
    let want = row(status().as_array().unwrap(), SMALL_SET).clone();
    assert_eq!(
        (&small["state"], &small["checksums"], &small["next_rebuild"]),
        (
            &json!("unreadable"),
            &json!("bad"),
            &json!("full: the file cannot be read")
        ),
        "{small}"
    );
    assert_eq!(want["state"], "unreadable");
    let detail = small["detail"].as_str().unwrap();
    assert!(detail.contains("checksum mismatch"), "{detail}");
    assert_eq!(detail, want["detail"].as_str().unwrap().replace(&data_dir, ""));
    assert_eq!(verified(), 3.0);
    // Asked again: the same answer, nothing read again.
    let (again, body) = partitions(&a, &s);
    assert_eq!(again, rows);
    assert!(!body.contains(t.dir.path().to_str().unwrap()), "{body}");
    assert_eq!(verified(), 3.0);
}

both_backends!(unmigrated: bad_ids_get_a_400_naming_the_field_and_no_answer_names_a_path);

async fn bad_ids_get_a_400_naming_the_field_and_no_answer_names_a_path(t: TestDb) {
    generate(&t, SMALL_SET, 50, &[]);
    // A file that is not a partition, under a set's name: a 500 that names it
    // relative to the data directory.
    std::fs::write(partition_file(&t, "BROKEN"), b"not a partition").unwrap();
    let s = Server::start(&t, &[], &[]);
    let a = agent();
    let data_dir = t.dir.path().to_str().unwrap().to_string();
    let p = Partition::open(partition_file(&t, SMALL_SET)).unwrap();
    let q = row_vector(&p, 0);
    let long = "A".repeat(300);
    let search = |model: &str, set: &str| s.url(&format!("/v1/partitions/{model}/{set}/search"));
    let mut cases: Vec<(String, Value, u16, Option<&str>)> = vec![
        (
            search(MODEL, &long),
            json!({"vector": q}),
            400,
            Some("scenario_set"),
        ),
        (
            search(MODEL, "A%00B"),
            json!({"vector": q}),
            400,
            Some("scenario_set"),
        ),
        (
            search(MODEL, "A%0AB"),
            json!({"vector": q}),
            400,
            Some("scenario_set"),
        ),
        (
            search(&long, SMALL_SET),
            json!({"vector": q}),
            400,
            Some("joint_model"),
        ),
        (
            search("%2E%2E", SMALL_SET),
            json!({"vector": q}),
            400,
            Some("joint_model"),
        ),
        (
            search("a%2Fb", SMALL_SET),
            json!({"vector": q}),
            400,
            Some("joint_model"),
        ),
        (
            search("a%00", SMALL_SET),
            json!({"vector": q}),
            400,
            Some("joint_model"),
        ),
        // `/` and `..` are legal in set ids (their file names are made safe): no such partition.
        (search(MODEL, "..%2F..%2Fetc"), json!({"vector": q}), 404, None),
        (search(MODEL, "NO_SUCH_SET"), json!({"vector": q}), 404, None),
        // A partition that cannot be opened is answered by an exact scan of
        // the database, as the CLI does: this set has no rows there.
        (search(MODEL, "BROKEN"), json!({"vector": q}), 422, None),
        (search(MODEL, SMALL_SET), json!({"vector": q}), 200, None),
    ];
    let similar = s.url("/v1/similar-scenarios");
    let exposure = s.url("/v1/portfolio-exposure");
    let sim = |instrument: &str, model: &str, set: &str| json!({"instrument_id": instrument, "as_of": "2020-03-16", "model_id": model, "scenario_set_id": set});
    let exp = |portfolio: &str, model: &str, set: &str| json!({"portfolio_id": portfolio, "as_of": "2020-03-16", "stab_model_id": model, "scenario_set_id": set});
    for (body, field) in [
        (sim(&long, MODEL, SMALL_SET), "instrument_id"),
        (sim("X\u{0}", MODEL, SMALL_SET), "instrument_id"),
        (sim("", MODEL, SMALL_SET), "instrument_id"),
        (sim("X", "../x", SMALL_SET), "model_id"),
        (sim("X", MODEL, &long), "scenario_set_id"),
        (sim("X", MODEL, "a\u{7}"), "scenario_set_id"),
    ] {
        cases.push((similar.clone(), body, 400, Some(field)));
    }
    for (body, field) in [
        (exp(&long, MODEL, SMALL_SET), "portfolio_id"),
        (exp("P", "a/b", SMALL_SET), "stab_model_id"),
        (exp("P", MODEL, "\u{0}"), "scenario_set_id"),
    ] {
        cases.push((exposure.clone(), body, 400, Some(field)));
    }
    for (url, body, want, field) in &cases {
        let (status, got) = post(&a, url, body);
        assert_eq!(status, *want, "{url:.120} {body:.120}: {got}");
        let text = got.to_string();
        assert!(!text.contains(&data_dir), "{url:.120}: {text}");
        if let Some(field) = field {
            assert_eq!(got["error"]["field"], *field, "{url:.120} {body:.120}: {got}");
        }
    }
    let (_, got) = post(&a, &search(MODEL, "BROKEN"), &json!({"vector": q}));
    let message = got["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("no STAB scenario vectors of set \"BROKEN\""),
        "{message}"
    );
    // The partitions' status names no path of the machine either.
    let (rows, body) = partitions(&a, &s);
    assert!(!body.contains(&data_dir), "{body}");
    assert!(
        rows.iter().any(|r| r["state"] == "unreadable"
            && r["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with(&format!("index/{MODEL}/BROKEN.stabidx")))),
        "{body}"
    );
    // Still serving.
    assert_eq!(get(&a, &s.url("/healthz")).0, 200);
}

both_backends!(unmigrated: strict_bodies_and_the_breadth_searched);

async fn strict_bodies_and_the_breadth_searched(t: TestDb) {
    generate(&t, GRAPH_SET, 3000, &[]);
    let s = Server::start(&t, &["--max-body-mb", "1"], &[]);
    let a = agent();
    let url = search_url(&s, GRAPH_SET);
    let p = graph_partition(&t);
    let q = row_vector(&p, 11);
    let one = json!({"vector": q}).to_string();
    // `null` where a number belongs names the field; leaving it out is the default.
    for (field, url, body) in [
        ("k", &url, json!({"vector": q, "k": null})),
        ("ef", &url, json!({"vector": q, "ef": null})),
        ("recall", &url, json!({"vector": q, "recall": null})),
        (
            "top_k",
            &s.url("/v1/similar-scenarios"),
            json!({"instrument_id": "X", "as_of": "2020-03-16", "scenario_set_id": GRAPH_SET, "top_k": null}),
        ),
        (
            "ef",
            &s.url("/v1/portfolio-exposure"),
            json!({"portfolio_id": "P", "as_of": "2020-03-16", "scenario_set_id": GRAPH_SET, "ef": null}),
        ),
    ] {
        let (status, got) = post(&a, url, &body);
        bad_field(&(status, got), field, "null");
    }
    let (status, got) = post_raw(&a, &url, &one);
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["hits"].as_array().unwrap().len(), 10);
    // Anything but whitespace after the JSON object: 400.
    for body in [format!("{one} x"), format!("{one}{one}"), format!("{one},")] {
        let (status, got) = post_raw(&a, &url, &body);
        bad_field(&(status, got), "body", "trailing bytes");
    }
    assert_eq!(post_raw(&a, &url, &format!(" {one}\n\t ")).0, 200);
    // The reported breadth is the one searched: at least k, a scan (null) at every row.
    for (k, ef, want) in [(50, 5, Some(50)), (5, 40, Some(40)), (5, 5000, None)] {
        let (status, got) = post(&a, &url, &json!({"vector": q, "k": k, "ef": ef}));
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["ef"].as_u64(), want, "k {k} ef {ef}: {got}");
        let hits = got["hits"].as_array().unwrap();
        assert_eq!(hits.len(), k);
        let searched = match want {
            Some(e) => p.search(&q, k, e as usize).unwrap(),
            None => p.search_exact(&q, k).unwrap(),
        };
        let ids: Vec<&str> = hits.iter().map(|h| h["scenario_id"].as_str().unwrap()).collect();
        assert_eq!(ids, searched.iter().map(|h| h.id.as_str()).collect::<Vec<_>>());
    }
    let (_, got) = post(&a, &url, &json!({"vectors": [q, q], "k": 20, "ef": 3}));
    assert_eq!(got["ef"], 20, "{got}");
    // A Content-Length above the limit: 413 at once, before any of the body
    // (whose sender would otherwise wait out the timeout for a 408).
    let path = format!("/v1/partitions/{MODEL}/{GRAPH_SET}/search");
    let answer = exchange(
        &s.addr(),
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 99999999999999\r\n\r\n{{\"vector\": ["
        )
        .as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let got: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {answer}"));
    assert!(
        got["error"]["message"]
            .as_str()
            .unwrap()
            .contains("99999999999999 bytes"),
        "{got}"
    );
    // Still serving, and the refusal counted.
    assert_eq!(post_raw(&a, &url, &one).0, 200);
    let route = "/v1/partitions/{joint_model}/{scenario_set}/search";
    let (_, m) = get(&a, &s.url("/metrics"));
    let line = format!("stabspace_http_requests_total{{route=\"{route}\",method=\"POST\",status=\"413\"}} 1");
    assert!(m.lines().any(|l| l == line), "no {line:?} in\n{m}");
}

both_backends!(unmigrated: sigterm_closes_what_is_not_received_whole_and_finishes_the_rest);

async fn sigterm_closes_what_is_not_received_whole_and_finishes_the_rest(t: TestDb) {
    use std::io::Write;
    generate(&t, SMALL_SET, 50, &[]);
    let p = Partition::open(partition_file(&t, SMALL_SET)).unwrap();
    let q = row_vector(&p, 3);
    // A timeout far beyond the hang guard below: a shutdown that waited for
    // a request not received whole would fail the test.
    let mut s = Server::start(
        &t,
        &["--timeout-secs", "600"],
        &[(
            stabspace::faults::PAUSE_AT_ENV,
            stabspace::faults::SERVE_SEARCH_HELD,
        )],
    );
    let addr = s.addr();
    let path = format!("/v1/partitions/{MODEL}/{SMALL_SET}/search");
    let mut half_head = std::net::TcpStream::connect(&addr).unwrap();
    half_head
        .write_all(format!("POST {path} HTTP/1.1\r\nHost: x\r\n").as_bytes())
        .unwrap();
    let mut half_body = std::net::TcpStream::connect(&addr).unwrap();
    half_body
        .write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: 1000\r\n\r\n{{\"vector\": ["
            )
            .as_bytes(),
        )
        .unwrap();
    let idle = std::net::TcpStream::connect(&addr).unwrap();
    // Accepted after those three (one accept loop, in order): a request received whole, held.
    let url = s.url(&path);
    let body = json!({"vector": q, "k": 3, "exact": true});
    let in_flight = std::thread::spawn(move || post(&agent(), &url, &body));
    s.await_stderr("held at serve:search-held");
    let status = s.terminate_within(Duration::from_secs(120));
    assert!(status.success(), "exit status {status}");
    // The request received whole was answered.
    let (code, got) = in_flight.join().expect("client");
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["hits"][0]["scenario_id"], p.id(3).unwrap());
    // The other three were closed at once, without an answer.
    let out = s.output();
    assert!(
        out.contains(
            "stopped (requests in flight finished; 1 connection(s) answered their last request, 3 closed at once"
        ),
        "{out}"
    );
    for (what, c) in [
        ("half a head", half_head),
        ("half a body", half_body),
        ("idle", idle),
    ] {
        let got = closed_by_server(c, Duration::from_secs(60)).expect("closed");
        assert!(
            got.is_empty(),
            "{what}: answered {}",
            String::from_utf8_lossy(&got)
        );
    }
}

both_backends!(unmigrated: a_stale_partition_answers_for_the_set_as_stored_and_rebuild_stale_repairs_it);

/// The value of one labelled series on `/metrics` (0 when absent).
pub(crate) fn series(a: &ureq::Agent, s: &Server, name: &str, labels: &str) -> f64 {
    let (_, m) = get(a, &s.url("/metrics"));
    m.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}{{{labels}}} ")))
        .map_or(0.0, |v| v.parse().unwrap())
}

/// The raw search route answers for the set as the database holds it: a
/// partition the database has moved past answers `index+delta` (the rows it
/// lacks scanned exactly: a new row is found by its own vector) or
/// `exact-scan` (a row was removed), says so and counts it in a metric;
/// `exact` scans the set as stored; `--rebuild-stale` rebuilds it in the
/// background and the answers are `index` again.
async fn a_stale_partition_answers_for_the_set_as_stored_and_rebuild_stale_repairs_it(t: TestDb) {
    const SET: &str = "GEN_STALE";
    generate(&t, SET, 2100, &[]);
    let s = Server::start(&t, &[], &[]);
    let a = agent();
    let url = search_url(&s, SET);
    let p = Partition::open(partition_file(&t, SET)).unwrap();
    let (status, r) = post(&a, &url, &json!({"vector": row_vector(&p, 0), "k": 3}));
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (&r["answered_by"], &r["partition_stale"]),
        (&json!("index"), &json!(false))
    );

    // 50 rows more, no partition write.
    generate(&t, SET, 2150, &["--no-index"]);
    let stored = stabspace::storage::joint::joint_scenarios_page(&t.db, MODEL, SET, None, 10_000)
        .await
        .unwrap();
    assert_eq!(stored.len(), 2150);
    let known: std::collections::HashSet<&str> = (0..p.len()).map(|r| p.id(r).unwrap()).collect();
    let new = stored
        .iter()
        .find(|v| !known.contains(v.scenario_id.as_str()))
        .expect("a row the partition lacks");
    let v = stabspace::vector::from_bytes(&new.vector, "a new row").unwrap();
    let (status, r) = post(&a, &url, &json!({"vector": v, "k": 3}));
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (&r["answered_by"], &r["partition_stale"]),
        (&json!("index+delta"), &json!(true))
    );
    assert_eq!(r["hits"][0]["scenario_id"], new.scenario_id.as_str(), "{r}");
    // A batch answers the same way.
    let (_, b) = post(&a, &url, &json!({"vectors": [v, row_vector(&p, 0)], "k": 3}));
    assert_eq!(b["answered_by"], "index+delta", "{b}");
    assert_eq!(
        b["results"][0]["hits"][0]["scenario_id"],
        new.scenario_id.as_str()
    );
    // `exact` scans the set as stored, not the file.
    let (_, e) = post(&a, &url, &json!({"vector": v, "k": 3, "exact": true}));
    assert_eq!(
        (&e["answered_by"], &e["partition_stale"], &e["ef"]),
        (&json!("exact-scan"), &json!(false), &Value::Null)
    );
    assert_eq!(
        e["hits"], r["hits"],
        "the exact scan of the set and index+delta agree"
    );
    let labels = "route=\"/v1/partitions/{joint_model}/{scenario_set}/search\",answered_by=\"index+delta\",partition_stale=\"true\"";
    assert_eq!(series(&a, &s, "stabspace_answers_total", labels), 2.0);

    // A removed row: the partition is not searched; the row is gone from the answers.
    let gone = p.id(0).unwrap().to_string();
    stabspace::with_pool!(t.db, pool => sqlx::query("DELETE FROM joint_embeddings WHERE entity_id = $1 AND scope_id = $2")
        .bind(&gone).bind(SET).execute(pool).await.map(|_| ()))
    .unwrap();
    let (_, d) = post(&a, &url, &json!({"vector": row_vector(&p, 0), "k": 3}));
    assert_eq!(
        (&d["answered_by"], &d["partition_stale"]),
        (&json!("exact-scan"), &json!(true))
    );
    assert_ne!(d["hits"][0]["scenario_id"], gone.as_str(), "{d}");
    drop(s);

    // --rebuild-stale: rebuilt in the background, then answered from the partition again.
    let s = Server::start(&t, &["--rebuild-stale", "--rebuild-stale-secs", "1"], &[]);
    s.await_stderr(&format!("--rebuild-stale: index {MODEL} / {SET}: built in full"));
    let url = search_url(&s, SET);
    // A breadth of half the rows: the row's own vector finds the row.
    let (_, r) = post(&a, &url, &json!({"vector": v, "k": 3, "ef": 1000}));
    assert_eq!(
        (&r["answered_by"], &r["partition_stale"]),
        (&json!("index"), &json!(false)),
        "{r}"
    );
    assert_eq!(r["hits"][0]["scenario_id"], new.scenario_id.as_str());
    assert_eq!(counter(&a, &s, "stabspace_stale_rebuilds_total"), 1.0);
    assert_eq!(Partition::open(partition_file(&t, SET)).unwrap().len(), 2149);
}

pub(crate) const KEY: &str = "k3y-of-the-test-server-0123456789";
const OTHER_KEY: &str = "another-key-the-server-accepts-42";
const WRONG_KEY: &str = "a-key-the-server-does-not-know-77";

/// A request with an optional `Authorization` header: (status, JSON answer,
/// its `WWW-Authenticate` header).
pub(crate) fn ask(
    a: &ureq::Agent,
    method: &str,
    url: &str,
    auth: Option<&str>,
    body: Option<&Value>,
) -> (u16, String, Option<String>) {
    let mut r = match (method, body) {
        ("GET", _) => {
            let mut req = a.get(url);
            if let Some(v) = auth {
                req = req.header("authorization", v);
            }
            req.call()
        }
        (_, body) => {
            let mut req = a.post(url);
            if let Some(v) = auth {
                req = req.header("authorization", v);
            }
            req.send_json(body.unwrap_or(&json!({})))
        }
    }
    .expect("request");
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().expect("body"),
        challenge,
    )
}

both_backends!(unmigrated: api_keys_guard_every_route_but_healthz);

async fn api_keys_guard_every_route_but_healthz(t: TestDb) {
    let m = market(&t);
    let keys = t.path("api-keys");
    std::fs::write(&keys, format!("# keys of the test\n\n   {KEY}  \n{OTHER_KEY}\n")).unwrap();
    let keys = keys.to_str().unwrap();
    let mut s = Server::start(&t, &["--api-key-file", keys], &[]);
    let a = agent();
    let p = graph_partition(&t);
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        (
            "POST",
            search_url(&s, GRAPH_SET),
            Some(json!({"vector": row_vector(&p, 4), "k": 3})),
        ),
        (
            "POST",
            s.url("/v1/similar-scenarios"),
            Some(
                json!({"instrument_id": m.instrument, "as_of": m.day, "model_id": MODEL,
                        "scenario_set_id": FLAT_SET, "top_k": 3}),
            ),
        ),
        (
            "POST",
            s.url("/v1/portfolio-exposure"),
            Some(
                json!({"portfolio_id": m.portfolio, "as_of": m.day, "scenario_set_id": FLAT_SET,
                        "stab_model_id": MODEL, "top_k": 3}),
            ),
        ),
        ("GET", s.url("/v1/partitions"), None),
        ("GET", s.url("/metrics"), None),
    ];
    let refused =
        |route: &str, auth: Option<&str>, (status, body, challenge): (u16, String, Option<String>)| {
            assert_eq!(status, 401, "{route} with {auth:?}: {body}");
            let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
            assert_eq!(v["error"]["status"], 401, "{body}");
            assert!(
                v["error"]["message"].as_str().unwrap().contains("API key"),
                "{body}"
            );
            let challenge = challenge.unwrap_or_else(|| panic!("{route}: no WWW-Authenticate"));
            assert!(challenge.starts_with("Bearer"), "{challenge}");
            for k in [KEY, OTHER_KEY, WRONG_KEY] {
                assert!(!body.contains(k), "{body}");
            }
        };
    let wrong = format!("Bearer {WRONG_KEY}");
    let prefix = format!("Bearer {}", &KEY[..KEY.len() - 1]);
    let with_key = format!("Bearer {KEY}");
    for (method, url, body) in &routes {
        for auth in [
            None,
            Some(wrong.as_str()),
            Some(prefix.as_str()),
            Some("Bearer"),
            Some("Basic dXNlcjpwYXNz"),
            Some(KEY),
            Some(&format!("Bearer {KEY} {KEY}")),
        ] {
            refused(url, auth, ask(&a, method, url, auth, body.as_ref()));
        }
        for auth in [with_key.clone(), format!("bearer  {OTHER_KEY}")] {
            let (status, got, _) = ask(&a, method, url, Some(&auth), body.as_ref());
            assert_eq!(status, 200, "{url}: {got}");
        }
    }
    // A path that names no route is refused too: routes are not told to strangers.
    refused("/nope", None, ask(&a, "GET", &s.url("/nope"), None, None));
    // Load balancers probe /healthz without a key.
    let (status, body, _) = ask(&a, "GET", &s.url("/healthz"), None, None);
    assert_eq!(status, 200, "{body}");
    // Refusals are counted by route template; no key reaches the metrics.
    let (_, metrics, _) = ask(&a, "GET", &s.url("/metrics"), Some(&with_key), None);
    for line in [
        "stabspace_unauthorized_total{route=\"/v1/partitions/{joint_model}/{scenario_set}/search\"} 7",
        "stabspace_unauthorized_total{route=\"/v1/similar-scenarios\"} 7",
        "stabspace_unauthorized_total{route=\"/metrics\"} 7",
        "stabspace_unauthorized_total{route=\"unmatched\"} 1",
        "stabspace_http_requests_total{route=\"/v1/partitions\",method=\"GET\",status=\"401\"} 7",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no line {line:?} in\n{metrics}"
        );
    }
    assert!(
        !metrics.contains("unauthorized_total{route=\"/healthz\"}"),
        "{metrics}"
    );
    let status = s.terminate();
    assert!(status.success(), "exit status {status}");
    let out = s.output();
    let err: Vec<String> = s.stderr.try_iter().collect();
    let err = err.join("\n");
    assert!(
        out.contains(
            "API keys required: 2 key(s) accepted (Authorization: Bearer <key>) on every route but /healthz"
        ),
        "{out}"
    );
    for k in [KEY, OTHER_KEY, WRONG_KEY, &KEY[..KEY.len() - 1]] {
        assert!(!out.contains(k) && !err.contains(k), "{k:?} in\n{out}\n{err}");
    }

    // Refused before a turn is waited for: with the only turn held by a
    // search, requests without a key are answered at once.
    let s = Server::start(
        &t,
        &["--api-key-file", keys, "--concurrency", "1"],
        &[(
            stabspace::faults::PAUSE_AT_ENV,
            stabspace::faults::SERVE_SEARCH_HELD,
        )],
    );
    let url = search_url(&s, GRAPH_SET);
    let body = json!({"vector": row_vector(&p, 4), "k": 3});
    let held = {
        let (url, body, auth) = (url.clone(), body.clone(), with_key.clone());
        std::thread::spawn(move || ask(&agent(), "POST", &url, Some(&auth), Some(&body)).0)
    };
    s.await_stderr("held at serve:search-held");
    let started = Instant::now();
    for _ in 0..20 {
        refused(&url, None, ask(&a, "POST", &url, None, Some(&body)));
    }
    // Refused without waiting for the turn: the held search is still held.
    assert!(
        !held.is_finished(),
        "20 refusals took {:?}: they waited for the only turn",
        started.elapsed()
    );
    assert_eq!(held.join().unwrap(), 200);
}

/// A key file the server cannot use stops it at start, naming the file and
/// line and never the key.
#[test]
fn a_bad_api_key_file_stops_serve_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    let name = file.to_str().unwrap();
    for (contents, want) in [
        (
            Some(format!("# ok\n{KEY}\n\nshort-key-12\n")),
            "line 4: the key is 12 characters long; keys must be at least 16",
        ),
        (
            Some(format!("{KEY}\n  k3y with a space in it  \n")),
            "line 2: the key has whitespace or a control character",
        ),
        (Some("# no key\n\n".to_string()), "the file holds no key"),
        (None, "cannot read it"),
    ] {
        match &contents {
            Some(t) => std::fs::write(&file, t).unwrap(),
            None => {
                let _ = std::fs::remove_file(&file);
            }
        }
        let o = crate::support::stabspace(
            &["serve", "--addr", "127.0.0.1:0", "--api-key-file", name],
            dir.path(),
        );
        let err = text(&o.stderr);
        assert!(!o.status.success(), "{contents:?}: serve started: {err}");
        assert!(err.contains(&format!("--api-key-file {name}: ")), "{err}");
        assert!(err.contains(want), "{contents:?}: {err:?} lacks {want:?}");
        for k in [KEY, "short-key", "k3y with"] {
            assert!(!err.contains(k), "{err}");
        }
        assert!(!text(&o.stdout).contains("listening"), "{}", text(&o.stdout));
    }
}
