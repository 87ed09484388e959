//! The engine's modules keep the layer order declared at the top of
//! `src/lib.rs`: a module imports only modules of lower layers. Read from the
//! sources: `use crate::…`, `crate::…::` and `super::…` paths, outside comments.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn src() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))
}

/// The declared layers: the lines `//! N. `a`, `b`: …` of lib.rs, module to layer.
fn layers(lib: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in lib.lines() {
        let Some(rest) = line.strip_prefix("//! ") else {
            continue;
        };
        let Some((n, rest)) = rest.split_once(". ") else {
            continue;
        };
        let Ok(layer) = n.parse::<usize>() else {
            continue;
        };
        let names = rest.split_once(':').map_or(rest, |(names, _)| names);
        for name in names.split(',') {
            let name = name.trim().trim_matches('`');
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "lib.rs layer {layer}: cannot read module name {name:?} in {line:?}"
            );
            assert!(
                out.insert(name.to_string(), layer).is_none(),
                "lib.rs: module `{name}` is in two layers"
            );
        }
    }
    assert!(
        !out.is_empty(),
        "lib.rs declares no layers (lines `//! N. `module`, …: …`)"
    );
    out
}

/// The modules lib.rs declares (`mod x;`, `pub mod x;`).
fn declared(lib: &str) -> BTreeSet<String> {
    strip_comments(lib)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_string())
        })
        .collect()
}

/// The source without `//` and `/* */` comments (doc comments included).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        match (rest.find("//"), rest.find("/*")) {
            (Some(l), b) if b.is_none_or(|b| l < b) => {
                out.push_str(&rest[..l]);
                rest = rest[l..].find('\n').map_or("", |e| &rest[l + e..]);
            }
            (_, Some(b)) => {
                out.push_str(&rest[..b]);
                rest = rest[b..].find("*/").map_or("", |e| &rest[b + e + 2..]);
            }
            _ => {
                out.push_str(rest);
                rest = "";
            }
        }
    }
    out
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first path segments after every `crate::` and `super::` in the code:
/// `use crate::{a, b::c}` gives `a` and `b`.
fn imported(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["crate::", "super::"] {
        for (at, _) in code.match_indices(prefix) {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let after = code[at + prefix.len()..].trim_start();
            if let Some(group) = after.strip_prefix('{') {
                // Items at depth 1 of the brace group.
                let mut depth = 0usize;
                let mut start = true;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => start = true,
                        c if start && !c.is_whitespace() => {
                            start = false;
                            out.insert(ident(&group[i..]).to_string());
                        }
                        _ => {}
                    }
                }
            } else {
                out.insert(ident(after).to_string());
            }
        }
    }
    out.retain(|s| !s.is_empty() && s != "self" && s != "super" && s != "crate");
    out
}

/// Every source file of `src/` but lib.rs, with the top-level module it belongs to.
fn sources() -> Vec<(String, std::path::PathBuf)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(src()).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut stack = vec![path];
            while let Some(dir) = stack.pop() {
                for f in std::fs::read_dir(&dir).unwrap() {
                    let f = f.unwrap().path();
                    if f.is_dir() {
                        stack.push(f);
                    } else if f.extension().is_some_and(|x| x == "rs") {
                        out.push((name.clone(), f));
                    }
                }
            }
        } else if path.extension().is_some_and(|x| x == "rs") && name != "lib" {
            out.push((name, path));
        }
    }
    out.sort();
    out
}

#[test]
fn every_module_imports_only_lower_layers() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let layers = layers(&lib);
    let declared = declared(&lib);
    let listed: BTreeSet<String> = layers.keys().cloned().collect();
    assert_eq!(
        declared, listed,
        "the modules lib.rs declares and the modules its layer list names differ"
    );
    let mut wrong = Vec::new();
    let mut files = 0;
    for (module, file) in sources() {
        files += 1;
        let path = file.strip_prefix(src().parent().unwrap()).unwrap_or(&file);
        let own = *layers
            .get(&module)
            .unwrap_or_else(|| panic!("{}: module `{module}` is in no layer", path.display()));
        let code = strip_comments(&std::fs::read_to_string(&file).unwrap());
        for name in imported(&code) {
            if name == module {
                continue;
            }
            match layers.get(&name) {
                Some(&layer) if layer < own => {}
                Some(&layer) => wrong.push(format!(
                    "{}: `{module}` (layer {own}) imports `{name}` (layer {layer})",
                    path.display()
                )),
                // `super::x` in a nested module names an item of the file
                // itself; `crate::x` must name a module, not a re-export.
                None if code.contains(&format!("crate::{name}")) => wrong.push(format!(
                    "{}: `crate::{name}` goes through the crate root; name its module",
                    path.display()
                )),
                None => {}
            }
        }
    }
    assert!(
        files > 10,
        "read only {files} source files from {}",
        src().display()
    );
    assert!(
        wrong.is_empty(),
        "imports against the layer order:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_reader_finds_imports_and_skips_comments() {
    let code = strip_comments(
        "use crate::{a, b::{c, d}, e as f};\n\
         use crate::g::h; // crate::commented\n\
         /* crate::blocked */ fn x() { crate::i::j(); super::k::l(); super::*; }\n\
         use super::M; pub(crate) fn y() {} $crate::n::o!();",
    );
    let got: Vec<String> = imported(&code).into_iter().collect();
    assert_eq!(got, ["M", "a", "b", "e", "g", "i", "k", "n"]);
    let lib = "//! 1. `x`, `y_z`: leaves.\n//!    more text: 2. not a layer\n//! 2. `w`: top.\nmod x;\npub mod y_z;\n";
    assert_eq!(
        layers(lib).into_iter().collect::<Vec<_>>(),
        [("w".to_string(), 2), ("x".to_string(), 1), ("y_z".to_string(), 1)]
    );
    assert_eq!(declared(lib).len(), 2);
}
