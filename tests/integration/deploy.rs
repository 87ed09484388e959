//! `deploy/haproxy.cfg`, as shipped, in front of two real `stabspace serve`
//! nodes on loopback (one database, one data directory, API keys on): the
//! searches of a set go to one node, a steady stream of searches from
//! several threads loses no request when one node is killed with SIGKILL in
//! the middle, and every answer is the exact scan's. Without `haproxy` the
//! test fails under `STABSPACE_REQUIRE_POSTGRES=1` (CI) and is skipped and
//! recorded otherwise (`support::program_or_skip`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stabspace_index::Partition;

use crate::serve::{agent, generate, partition_file, row_vector, Server, KEY, MODEL};
use crate::support::{program_or_skip, TestDb};

/// Four sets below the graph threshold: a search of their flat partitions is
/// the exact scan.
const SETS: [&str; 4] = ["DEPLOY_A", "DEPLOY_B", "DEPLOY_C", "DEPLOY_D"];

/// `haproxy -f deploy/haproxy.cfg -db`, killed when dropped.
struct Proxy {
    child: Child,
    base: String,
    output: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    fn start(haproxy: &Path, nodes: &[&Server]) -> Proxy {
        let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy.cfg");
        let port = crate::support::free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = Command::new(haproxy)
            .arg("-f")
            .arg(&cfg)
            .arg("-db")
            .env("STABSPACE_LISTEN", &listen)
            .env("STABSPACE_NODE1", nodes[0].addr())
            .env("STABSPACE_NODE2", nodes[1].addr())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start haproxy");
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let sink = Arc::clone(&output);
            std::thread::spawn(move || {
                for l in BufReader::new(stream).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(l);
                }
            });
        }
        let proxy = Proxy {
            child,
            base: format!("http://{listen}"),
            output,
        };
        // Up once it answers /healthz (through a node).
        let a = agent();
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut r) = a.get(proxy.url("/healthz")).call() {
                if r.status() == 200 && r.body_mut().read_to_string().is_ok() {
                    return proxy;
                }
            }
            assert!(
                Instant::now() < until,
                "haproxy never answered /healthz:\n{}",
                proxy.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node's `stabspace_partitions_loaded`: how many sets its cache holds.
fn partitions_loaded(s: &Server) -> usize {
    crate::serve::metric(s, Some(&format!("Bearer {KEY}")), "stabspace_partitions_loaded")
        .expect("a stabspace_partitions_loaded gauge") as usize
}

/// One search: its path, its body, the exact scan's ids.
struct Query {
    path: String,
    body: Value,
    want: Vec<String>,
}

fn queries(t: &TestDb) -> Vec<Query> {
    let mut out = Vec::new();
    for set in SETS {
        let p = Partition::open(partition_file(t, set)).expect("partition");
        for row in (0..p.len()).step_by(37) {
            let q = row_vector(&p, row);
            let want = p.search_exact(&q, 5).unwrap().into_iter().map(|h| h.id).collect();
            out.push(Query {
                path: format!("/v1/partitions/{MODEL}/{set}/search"),
                body: json!({"vector": q, "k": 5}),
                want,
            });
        }
    }
    out
}

/// Ask `q` through the proxy: `Err` names what went wrong.
fn search(a: &ureq::Agent, proxy: &str, q: &Query) -> Result<(), String> {
    let mut r = a
        .post(format!("{proxy}{}", q.path))
        .header("authorization", format!("Bearer {KEY}"))
        .send_json(&q.body)
        .map_err(|e| format!("{}: {e}", q.path))?;
    let status = r.status().as_u16();
    let body = r
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{}: {e}", q.path))?;
    if status != 200 {
        return Err(format!("{}: {status} {body}", q.path));
    }
    let got: Value = serde_json::from_str(&body).map_err(|e| format!("{}: {e}: {body}", q.path))?;
    let ids: Vec<&str> = got["hits"]
        .as_array()
        .map(|h| h.iter().filter_map(|h| h["scenario_id"].as_str()).collect())
        .unwrap_or_default();
    if ids != q.want {
        return Err(format!("{}: got {ids:?}, the exact scan {:?}", q.path, q.want));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_in_front_of_two_nodes_loses_no_request_when_one_is_killed() {
    let Some(haproxy) = program_or_skip("haproxy", "apt-get install -y haproxy") else {
        return;
    };
    let t = crate::support::sqlite(false).await;
    for set in SETS {
        generate(&t, set, 300, &[]);
    }
    let keys = t.path("api-keys");
    std::fs::write(&keys, format!("{KEY}\n")).unwrap();
    let keys = keys.to_str().unwrap();
    let mut nodes = [
        Server::start(&t, &["--api-key-file", keys], &[]),
        Server::start(&t, &["--api-key-file", keys], &[]),
    ];
    let proxy = Proxy::start(&haproxy, &[&nodes[0], &nodes[1]]);
    let queries = Arc::new(queries(&t));

    // One search of each set at a time: each set is opened on one node only.
    let a = agent();
    for q in queries.iter() {
        search(&a, &proxy.base, q).unwrap_or_else(|e| panic!("{e}\n{}", proxy.output()));
    }
    let loaded = [partitions_loaded(&nodes[0]), partitions_loaded(&nodes[1])];
    assert_eq!(
        loaded[0] + loaded[1],
        SETS.len(),
        "each set on one node, by the hash of its path: {loaded:?}"
    );

    // A steady stream from three threads; one node killed in the middle.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..3)
        .map(|c| {
            let (stop, ok, failed, queries, base) = (
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&failed),
                Arc::clone(&queries),
                proxy.base.clone(),
            );
            std::thread::spawn(move || {
                let a = agent();
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    match search(&a, &base, &queries[i % queries.len()]) {
                        Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            let mut f = failed.lock().unwrap();
                            f.push(e);
                            // Enough to fail the test: no flood against a dead proxy.
                            if f.len() >= 100 {
                                break;
                            }
                            drop(f);
                            std::thread::sleep(Duration::from_millis(10));
                            0
                        }
                    };
                    i += 3;
                }
            })
        })
        .collect();
    // A failed assertion below unwinds through this: the clients stop too.
    let _stop_clients = StopOnDrop(Arc::clone(&stop));
    let wait_for = |n: usize| {
        let until = Instant::now() + Duration::from_secs(20);
        while ok.load(Ordering::Relaxed) < n {
            assert!(
                Instant::now() < until,
                "the clients stalled at {} answers; failures {:?}",
                ok.load(Ordering::Relaxed),
                failed.lock().unwrap().first()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for(150);
    // The node holding more sets (so that requests were on their way to it).
    let victim = usize::from(loaded[1] > loaded[0]);
    let before = ok.load(Ordering::Relaxed);
    nodes[victim].kill();
    let killed_at = Instant::now();
    // Past the health checks' verdict (2 s at most), and well into the after.
    wait_for(before + 300);
    while killed_at.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }
    let failed = failed.lock().unwrap();
    let answered = ok.load(Ordering::Relaxed);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed (node{} killed after {before}), first: {}\n{}",
        failed.len(),
        failed.len() + answered,
        victim + 1,
        failed[0],
        proxy.output()
    );
    // The survivor took the dead node's sets.
    let survivor = &nodes[1 - victim];
    assert_eq!(partitions_loaded(survivor), SETS.len());
    eprintln!(
        "deploy: {answered} searches through haproxy, all exact; sets per node before the kill {loaded:?}; \
         node{} killed after {before}",
        victim + 1
    );
    // The proxy logged requests, never a key.
    let log = proxy.output();
    assert!(log.contains("/search"), "{log}");
    assert!(!log.contains(KEY), "{log}");
    drop(proxy);
}

/// Sets its flag when dropped, so that threads polling it stop on every way
/// out of a test, a panic included.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
