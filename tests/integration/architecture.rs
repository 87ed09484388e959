//! The library's layers, checked from its sources (ARCHITECTURE.md, "Layers").
//! Each test fails naming the file, line and path that break a rule.
//!
//! - every module belongs to one layer and names only modules of its own layer
//!   or below: foundation → storage → domain → partitions → queries →
//!   workflows → front door → front ends (`cli`, `commands`, `server`);
//! - within `partitions/` and `nearest/`, each room names only the rooms
//!   before it, by name;
//! - SQL is written in `src/storage/` only;
//! - only the CLI draws progress bars;
//! - the domain does no I/O;
//! - partition files are opened through the partition store;
//! - no source file is over 700 lines.
//!
//! Paths are read from `use` trees (groups expanded, across lines) and from
//! code written inline; comment lines are not code.

use std::path::{Path, PathBuf};

/// One source file: its path from the workspace root and its code lines
/// (number, text), comment lines left out.
struct Source {
    path: String,
    lines: usize,
    code: Vec<(usize, String)>,
}

impl Source {
    fn under(&self, prefixes: &[&str]) -> bool {
        prefixes.iter().any(|p| self.path.starts_with(p))
    }

    /// `file:line: text` of the code lines holding any of `needles`.
    fn find(&self, needles: &[&str]) -> Vec<String> {
        self.code
            .iter()
            .filter(|(_, t)| needles.iter().any(|n| t.contains(n)))
            .map(|(n, t)| format!("{}:{n}: {}", self.path, t.trim()))
            .collect()
    }

    /// Every `crate::`, `super::` and `stabspace::` path the code names, with
    /// its line: `use` trees expanded, inline paths as written.
    fn paths(&self) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        let mut pending: Option<(usize, String)> = None;
        for (n, line) in &self.code {
            let t = line.trim();
            if let Some((start, mut tree)) = pending.take() {
                tree.push_str(t);
                if tree.contains(';') {
                    out.extend(
                        expand("", tree.split(';').next().unwrap())
                            .into_iter()
                            .map(|p| (start, p)),
                    );
                } else {
                    pending = Some((start, tree));
                }
                continue;
            }
            let after_use = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
                .iter()
                .find_map(|u| t.strip_prefix(u));
            if let Some(tree) = after_use {
                if tree.contains(';') {
                    out.extend(
                        expand("", tree.split(';').next().unwrap())
                            .into_iter()
                            .map(|p| (*n, p)),
                    );
                } else {
                    pending = Some((*n, tree.to_string()));
                }
                continue;
            }
            for root in ["crate::", "super::", "stabspace::"] {
                let mut rest = t;
                while let Some(i) = rest.find(root) {
                    let before = rest[..i].chars().next_back();
                    rest = &rest[i..];
                    let path: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                        .collect();
                    rest = &rest[path.len().max(1)..];
                    // `foo::crate::x` is not a path of ours.
                    if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                        continue;
                    }
                    out.push((*n, path.trim_end_matches(':').to_string()));
                }
            }
        }
        out
    }
}

/// The leaf paths of a `use` tree: `a::{b, c::{d, e}}` → a::b, a::c::d, a::c::e.
fn expand(prefix: &str, tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let join = |head: &str| match (prefix.is_empty(), head.is_empty()) {
        (true, _) => head.to_string(),
        (_, true) => prefix.to_string(),
        _ => format!("{prefix}::{head}"),
    };
    let Some(open) = tree.find('{') else {
        let leaf = tree.split(" as ").next().unwrap_or(tree).trim();
        return if leaf.is_empty() {
            Vec::new()
        } else {
            vec![join(leaf)]
        };
    };
    let head = join(tree[..open].trim().trim_end_matches("::"));
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut depth, mut start, mut out) = (0, 0, Vec::new());
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.extend(expand(&head, &inner[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    out.extend(expand(&head, &inner[start..]));
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir` (relative to the workspace root), sorted.
fn sources(dir: &str) -> Vec<Source> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join(dir), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no sources under {dir}");
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            let code = text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim_start().starts_with("//"))
                .map(|(i, l)| (i + 1, l.to_string()))
                .collect();
            Source {
                path: f.strip_prefix(root()).unwrap().display().to_string(),
                lines: text.lines().count(),
                code,
            }
        })
        .collect()
}

fn none(what: &str, found: Vec<String>) {
    assert!(found.is_empty(), "{what}:\n{}", found.join("\n"));
}

/// The layers, lowest first, and the top-level modules (or `joint/` files)
/// each holds. A module missing here fails the test: place it first.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundation",
        &[
            "error", "progress", "output", "spaces", "vector", "faults", "parse", "text", "Error", "Result",
        ],
    ),
    ("storage", &["storage", "with_pool", "on_tx"]),
    ("domain", &["encoders", "portfolio", "pointintime", "joint"]),
    ("partitions", &["partitions"]),
    ("queries", &["nearest"]),
    (
        "workflows",
        &[
            "import",
            "backfill",
            "joint/states",
            "joint/scenarios",
            "joint/profile",
            "diagnostics",
            "eval",
            "gen_scenarios",
            "bench",
            "demo_db",
            "synth",
        ],
    ),
    ("front door", &["config", "report"]),
    ("front ends", &["cli", "commands", "server", "main", "lib"]),
];

/// The workflow items `joint/mod.rs` re-exports: naming them through
/// `crate::joint::` names a workflow.
const JOINT_WORKFLOW_ITEMS: &[&str] = &[
    "states",
    "scenarios",
    "profile",
    "backfill_joint_profiles",
    "encode_profiles",
    "ProfileBackfill",
    "PROFILE_MODELS",
    "backfill_joint_scenarios",
    "ScenarioProjection",
    "backfill_joint_states",
    "StateBackfill",
    "StateSummary",
];

fn layer(name: &str) -> usize {
    LAYERS
        .iter()
        .position(|(_, mods)| mods.contains(&name))
        .unwrap_or_else(|| panic!("module {name:?} is in no layer: add it to LAYERS and ARCHITECTURE.md"))
}

/// The layer of a source file under `src/`.
fn layer_of_file(path: &str) -> usize {
    let rel = path.strip_prefix("src/").expect("a file under src/");
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut parts = rel.split('/');
    let top = parts.next().unwrap();
    match (top, parts.next()) {
        ("joint", Some(file)) if file != "mod" && file != "registry" => layer(&format!("joint/{file}")),
        _ => layer(top),
    }
}

/// The layer of a `crate::` path.
fn layer_of_path(path: &str) -> usize {
    let mut parts = path.trim_start_matches("crate::").split("::");
    let top = parts.next().unwrap_or_default();
    match (top, parts.next()) {
        ("joint", Some(item)) if JOINT_WORKFLOW_ITEMS.contains(&item) => layer("joint/states"),
        _ => layer(top),
    }
}

#[test]
fn every_module_names_only_its_layer_and_below() {
    let (mut found, mut checked) = (Vec::new(), 0);
    for s in sources("src") {
        let mine = layer_of_file(&s.path);
        for (n, p) in s.paths() {
            if !p.starts_with("crate::") || p == "crate::" {
                continue;
            }
            checked += 1;
            let theirs = layer_of_path(&p);
            if theirs > mine {
                found.push(format!(
                    "{}:{n}: {p} ({} names {})",
                    s.path, LAYERS[mine].0, LAYERS[theirs].0
                ));
            }
        }
    }
    assert!(checked > 100, "only {checked} paths read: the reader is broken");
    none("a module naming a layer above its own", found);
}

#[test]
fn the_python_crate_links_no_front_end() {
    let mut found = Vec::new();
    for s in sources("python/src") {
        for (n, p) in s.paths() {
            for front in ["stabspace::cli", "stabspace::commands", "stabspace::server"] {
                if p.starts_with(front) {
                    found.push(format!("{}:{n}: {p}", s.path));
                }
            }
        }
    }
    none("the Python crate naming the CLI or the server", found);
}

/// Within a directory of rooms, each room names only the rooms before it,
/// and by their names (not through `mod.rs`'s re-exports, which would hide
/// which room it is).
fn rooms_in_order(dir: &str, module: &str, rooms: &[&str]) {
    let all = sources(dir);
    let mut found = Vec::new();
    for (i, room) in rooms.iter().enumerate() {
        let path = format!("{dir}/{room}.rs");
        let s = all
            .iter()
            .find(|s| s.path == path)
            .unwrap_or_else(|| panic!("{path} is gone: update the rooms of this test"));
        for (n, p) in s.paths() {
            let Some(rest) = p
                .strip_prefix("super::")
                .or_else(|| p.strip_prefix(&format!("{module}::")))
            else {
                continue;
            };
            let named = rest.split("::").next().unwrap_or_default();
            if named == "*" {
                continue; // a test module's `use super::*`: its own room
            }
            match rooms.iter().position(|r| *r == named) {
                Some(j) if j < i => {}
                Some(_) => found.push(format!("{}:{n}: {p} (a later room)", s.path)),
                None => found.push(format!("{}:{n}: {p} (not by its room's name)", s.path)),
            }
        }
    }
    none(&format!("a room of {dir} naming a later one"), found);
}

#[test]
fn partitions_and_nearest_are_rooms_in_order() {
    rooms_in_order(
        "src/partitions",
        "crate::partitions",
        &[
            "store",
            "fetch",
            "provenance",
            "transfer",
            "remote",
            "scan",
            "queries",
            "catalog",
            "build",
            "calibrate",
        ],
    );
    rooms_in_order(
        "src/nearest",
        "crate::nearest",
        &["breadth", "delta", "open", "cache"],
    );
}

#[test]
fn sql_is_written_in_storage_only() {
    // Statement keywords as SQL writes them, and the ways to run a statement.
    let sql = [
        "SELECT ",
        "INSERT INTO",
        "DELETE FROM",
        "UPDATE ",
        "CREATE TABLE",
        "CREATE INDEX",
        "ALTER TABLE",
        "DROP TABLE",
        "sqlx::query",
        "query_as",
        "query_scalar",
        "with_pool!",
        "on_tx!",
        ".fetch_all(",
        ".fetch_one(",
        ".fetch_optional(",
    ];
    let mut found = Vec::new();
    for s in sources("src").into_iter().chain(sources("python/src")) {
        if !s.under(&["src/storage/"]) {
            found.extend(s.find(&sql));
        }
    }
    none("SQL outside src/storage/", found);
}

#[test]
fn only_the_cli_draws_progress_bars() {
    let mut found = Vec::new();
    for s in sources("src").into_iter().chain(sources("python/src")) {
        if !s.under(&["src/cli/", "src/cli.rs", "src/commands/"]) {
            found.extend(s.find(&["indicatif", "ProgressBar", "ProgressStyle"]));
        }
    }
    none(
        "progress bars outside the CLI (report to a `progress::Progress` instead)",
        found,
    );
}

#[test]
fn the_domain_does_no_io() {
    let io = [
        "crate::storage",
        "crate::progress",
        "sqlx",
        "tokio",
        "std::fs",
        "std::io",
        "fs::",
        "File::",
        "clap",
        "print!",
        "println!",
        "eprint",
        "dbg!",
    ];
    let pure: Vec<Source> = sources("src")
        .into_iter()
        .filter(|s| {
            s.under(&["src/encoders/"])
                || [
                    "src/vector.rs",
                    "src/portfolio.rs",
                    "src/pointintime.rs",
                    "src/spaces.rs",
                    "src/joint/mod.rs",
                ]
                .contains(&s.path.as_str())
        })
        .collect();
    assert!(pure.len() >= 6, "the domain's files moved: update this test");
    // Storage's names for stored values (`STAB_JOINT_TYPE`) may be re-exported:
    // constants, not I/O.
    let constants_only = |line: &str| {
        line.contains("pub use crate::storage::")
            && expand(
                "",
                line.trim().trim_start_matches("pub use ").trim_end_matches(';'),
            )
            .iter()
            .all(|p| {
                let leaf = p.rsplit("::").next().unwrap_or_default();
                leaf.chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
            })
    };
    let found = pure
        .iter()
        .flat_map(|s| s.find(&io))
        .filter(|hit| !constants_only(hit.split_once(": ").map_or("", |(_, l)| l)))
        .collect();
    none("I/O or drawing in the domain", found);
}

#[test]
fn partition_files_are_opened_through_the_store() {
    // The stores open files (a directory's; a remote store's downloads and
    // staged builds); the engine's own API opens the file a user names
    // (`stabspace.Partition(path)`), and the benchmark opens its scratch files.
    let allowed = [
        "src/partitions/store.rs",
        "src/partitions/remote.rs",
        "src/bench.rs",
        "python/src/partition.rs",
    ];
    let mut found = Vec::new();
    for s in sources("src").into_iter().chain(sources("python/src")) {
        if !allowed.contains(&s.path.as_str()) {
            found.extend(s.find(&["Partition::open(", "Engine::open("]));
        }
    }
    none("partition files opened around the PartitionStore", found);
}

#[test]
fn no_source_file_is_over_700_lines() {
    let long: Vec<String> = ["src", "index/src", "python/src"]
        .iter()
        .flat_map(|d| sources(d))
        .filter(|s| s.lines > 700)
        .map(|s| format!("{}: {} lines", s.path, s.lines))
        .collect();
    none("source files over 700 lines (split them by idea)", long);
}

#[test]
fn use_trees_are_read_whole() {
    assert_eq!(
        expand("", "crate::{a, b::{c, d as e}, f::*}"),
        ["crate::a", "crate::b::c", "crate::b::d", "crate::f::*"]
    );
    let s = Source {
        path: "x.rs".into(),
        lines: 4,
        code: vec![
            (1, "use crate::{".into()),
            (2, "    config::Config, cli,".into()),
            (3, "};".into()),
            (4, "let x = crate::server::run(super::y, my_crate::z);".into()),
        ],
    };
    let paths: Vec<(usize, String)> = s.paths();
    let want = [
        (1, "crate::config::Config"),
        (1, "crate::cli"),
        (4, "crate::server::run"),
        (4, "super::y"),
    ];
    assert_eq!(paths.len(), want.len(), "{paths:?}");
    for ((n, p), (wn, wp)) in paths.iter().zip(want) {
        assert_eq!((*n, p.as_str()), (wn, wp));
    }
}
