//! `stabspace serve` on a real loopback port, over real databases and
//! partition files: answers equal the CLI's (both backends), bad requests get
//! a JSON 4xx naming the field, a partition rebuilt under load fails no
//! request, metrics count what was served, SIGTERM finishes what is in flight.

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

const MODEL: &str = "joint-stab-fragility-v2";
const FLAT_SET: &str = "HIST_CRASH_WINDOWS";
const GRAPH_SET: &str = "GEN_BIG";

/// Run the CLI on the test database; assert success; stdout.
fn cli(t: &TestDb, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_stabspace"))
        .args(args)
        .args(["--database-url", &t.url])
        .env_remove("DATABASE_URL")
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
struct Market {
    day: String,
    instrument: String,
    portfolio: String,
}

fn market(t: &TestDb) -> Market {
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
struct Server {
    child: Child,
    base: String,
    stderr: Receiver<String>,
    stdout: Arc<Mutex<Vec<String>>>,
    stdout_reader: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(t: &TestDb, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stabspace"))
            .args(["serve", "--addr", "127.0.0.1:0", "--database-url", &t.url])
            .args(extra)
            .env_remove("DATABASE_URL")
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
    fn await_stderr(&self, text: &str) -> String {
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

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then the exit status (within 20 s).
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success());
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                Instant::now() < until,
                "the server did not exit within 20 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// POST a JSON body; (status, JSON answer).
fn post(a: &ureq::Agent, url: &str, body: &Value) -> (u16, Value) {
    let mut r = a.post(url).send_json(body).expect("request");
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")),
    )
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

fn get(a: &ureq::Agent, url: &str) -> (u16, String) {
    let mut r = a.get(url).call().expect("request");
    (r.status().as_u16(), r.body_mut().read_to_string().expect("body"))
}

fn search_url(s: &Server, set: &str) -> String {
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
fn row_vector(p: &Partition, row: usize) -> Vec<f32> {
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
    // GET /v1/partitions is `index status`.
    let want: Value = serde_json::from_str(&cli(&t, &["index", "status", "--format", "json"])).unwrap();
    let (status, got) = get(&a, &s.url("/v1/partitions"));
    assert_eq!(status, 200);
    let got: Value = serde_json::from_str(&got).unwrap();
    assert_eq!(got["partitions"], want);
    // The raw search route answers as the partition does in process.
    let p = graph_partition(&t);
    let q = row_vector(&p, 7);
    let (status, got) = post(&a, &search_url(&s, GRAPH_SET), &json!({"vector": q, "k": 5}));
    assert_eq!(status, 200, "{got}");
    let ef = got["ef"].as_u64().expect("a graph search reports its ef") as usize;
    let want = p.search(&q, 5, ef).unwrap();
    let hits = got["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 5);
    assert_eq!(hits[0]["scenario_id"], p.id(7).unwrap());
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
    assert_eq!(
        (status, got["error"]["field"].as_str()),
        (400, Some("path")),
        "{got}"
    );
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
    assert_eq!(
        (status, got["error"]["field"].as_str()),
        (400, Some("body")),
        "{got}"
    );
    assert!(
        got["error"]["message"]
            .as_str()
            .unwrap()
            .contains("instrument_id"),
        "{got}"
    );
    let (status, got) = post(
        &a,
        &similar,
        &json!({"instrument_id": m.instrument, "as_of": "31/01/2023", "scenario_set_id": FLAT_SET}),
    );
    assert_eq!(
        (status, got["error"]["field"].as_str()),
        (400, Some("as_of")),
        "{got}"
    );
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
    assert_eq!(
        (status, got["error"]["field"].as_str()),
        (400, Some("top_k")),
        "{got}"
    );
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
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (url, stop, ok, failed, queries) = (
                url.clone(),
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&failed),
                Arc::clone(&queries),
            );
            std::thread::spawn(move || {
                let a = agent();
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let (status, got) =
                        post(&a, &url, &json!({"vector": queries[i % queries.len()], "k": 5}));
                    if status == 200 && got["hits"].as_array().is_some_and(|h| h.len() == 5) {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.lock().unwrap().push(format!("{status}: {got}"));
                    }
                    i += 4;
                }
            })
        })
        .collect();
    // Load running; then two rebuilds, each followed by more answered requests
    // (so that each new file is seen).
    let wait_for = |n: usize| {
        let until = Instant::now() + Duration::from_secs(60);
        while ok.load(Ordering::Relaxed) < n {
            assert!(
                Instant::now() < until,
                "the clients stalled at {} answers",
                ok.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for(20);
    let before = ok.load(Ordering::Relaxed);
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
        wait_for(ok.load(Ordering::Relaxed) + 20);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }
    let failed = failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} requests failed during the swaps, first: {}",
        failed.len(),
        failed[0]
    );
    let ok = ok.load(Ordering::Relaxed);
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
    let (status, got) = post(&a, &url, &json!({"vector": queries[0], "k": 1}));
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
    let body = json!({"vector": q, "k": 3});
    let in_flight = std::thread::spawn(move || post(&agent(), &url, &body));
    s.await_stderr("held at serve:search-held");
    let status = s.terminate();
    assert!(status.success(), "exit status {status}");
    let (code, got) = in_flight.join().expect("client");
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["hits"][0]["scenario_id"], p.id(3).unwrap());
    let out = s.output();
    assert!(out.contains("stopped (requests in flight finished)"), "{out}");
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
    // closed by the server after the timeout; a shutdown does not wait for them.
    use std::io::{ErrorKind, Read, Write};
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(b"POST /v1/partitions HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let idle = std::net::TcpStream::connect(&addr).unwrap();
    for (what, mut c) in [("a half-sent request head", slow), ("an idle connection", idle)] {
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let started = Instant::now();
        // End of stream or a reset: closed by the server; a read timeout: still open.
        let r = c.read_to_end(&mut Vec::new());
        let waited = started.elapsed();
        let open = matches!(&r, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
        assert!(
            !open && waited < Duration::from_secs(10),
            "{what}: still open after {waited:?}"
        );
    }
    let mut s = s;
    let _open = std::net::TcpStream::connect(&addr).unwrap();
    let started = Instant::now();
    assert!(s.terminate().success());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        started.elapsed()
    );
}
