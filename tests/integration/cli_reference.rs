//! `docs/reference/cli.md` is what the binary's clap definitions render now:
//! a flag added, renamed or re-documented without regenerating the reference
//! fails here. `STABSPACE_BLESS=1` rewrites the file instead.

use std::path::Path;

use stabspace::cli::reference::{markdown, PATH};

#[test]
fn the_committed_cli_reference_is_what_the_binary_renders() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(PATH);
    let want = markdown();
    if std::env::var_os("STABSPACE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let got = std::fs::read_to_string(&path).unwrap_or_default();
    if got != want {
        let line = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| got.lines().count().min(want.lines().count()))
            + 1;
        panic!(
            "{PATH} differs from what the clap definitions render (first at line {line}:\n  committed: {:?}\n  rendered:  {:?}).\n\
             Regenerate it: STABSPACE_BLESS=1 cargo test --test integration cli_reference",
            got.lines().nth(line - 1).unwrap_or(""),
            want.lines().nth(line - 1).unwrap_or("")
        );
    }
    // Every subcommand has its section.
    for sub in [
        "import",
        "index build",
        "index calibrate",
        "serve",
        "bench",
        "demo",
    ] {
        assert!(
            got.contains(&format!("## `stabspace {sub}`")),
            "{sub} has no section"
        );
    }
}
