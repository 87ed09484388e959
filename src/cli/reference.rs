//! The CLI reference, `docs/reference/cli.md`, rendered from the clap
//! definitions: every subcommand, its usage, and every argument with its value
//! names, default, environment variable, accepted values and help. The
//! committed file is compared with this rendering by
//! `tests/integration/cli_reference.rs`, so the reference cannot drift from
//! the code; regenerate it with
//! `STABSPACE_BLESS=1 cargo test --test integration cli_reference`.

use std::fmt::Write;

use clap::{Arg, Command, CommandFactory};

use super::Cli;

/// Where the reference lives, relative to the repository root.
pub const PATH: &str = "docs/reference/cli.md";

/// The whole reference, in Markdown.
pub fn markdown() -> String {
    let mut root = Cli::command();
    root.build();
    let mut out = String::from(
        "# CLI reference\n\n\
         <!-- Generated from the clap definitions by src/cli/reference.rs; do not edit.\n     \
         tests/integration/cli_reference.rs fails when this file differs from the binary;\n     \
         regenerate with: STABSPACE_BLESS=1 cargo test --test integration cli_reference -->\n\n\
         Every subcommand of `stabspace`, its arguments, their defaults and the\n\
         environment variables that set them. `stabspace COMMAND --help` prints the same.\n\n",
    );
    out.push_str("Commands:\n\n");
    contents(&root, &mut out, 0);
    out.push('\n');
    section(&root, &mut out, true);
    out
}

/// The table of contents: one line per command, nested.
fn contents(cmd: &Command, out: &mut String, depth: usize) {
    for sub in visible(cmd) {
        let name = sub.get_bin_name().unwrap_or(sub.get_name());
        let about = sub
            .get_about()
            .map(|a| escape(&one_line(&a.to_string())))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{}- [`{name}`](#{}): {about}",
            "  ".repeat(depth),
            anchor(name)
        );
        contents(sub, out, depth + 1);
    }
}

/// One command's section, then its subcommands'.
fn section(cmd: &Command, out: &mut String, root: bool) {
    let name = cmd.get_bin_name().unwrap_or(cmd.get_name());
    let _ = writeln!(out, "## `{name}`\n");
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        let _ = writeln!(out, "{}\n", escape(about.to_string().trim_end()));
    }
    let usage = cmd.clone().render_usage().to_string();
    let usage = usage.trim().trim_start_matches("Usage:").trim();
    let _ = writeln!(out, "```text\n{usage}\n```\n");
    let args: Vec<&Arg> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && (root || !a.is_global_set()))
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .collect();
    if !args.is_empty() {
        let _ = writeln!(
            out,
            "{}\n",
            if root {
                "Global options (every command takes them):"
            } else {
                "Arguments:"
            }
        );
        for a in args {
            argument(a, out);
        }
        out.push('\n');
    }
    for sub in visible(cmd) {
        section(sub, out, false);
    }
}

/// One argument: its spelling, then what sets it and what it does.
fn argument(a: &Arg, out: &mut String) {
    let values: Vec<String> = a
        .get_value_names()
        .map(|v| v.iter().map(|n| format!("<{n}>")).collect())
        .unwrap_or_else(|| vec![format!("<{}>", a.get_id().as_str().to_uppercase())]);
    let takes = a.get_action().takes_values();
    let spelling = if a.is_positional() {
        values.join(" ")
    } else {
        let mut s = match (a.get_short(), a.get_long()) {
            (Some(c), Some(l)) => format!("-{c}, --{l}"),
            (Some(c), None) => format!("-{c}"),
            (None, Some(l)) => format!("--{l}"),
            (None, None) => a.get_id().to_string(),
        };
        if takes {
            s.push(' ');
            s.push_str(&values.join(" "));
        }
        s
    };
    let mut facts = Vec::new();
    if a.is_required_set() {
        facts.push("required".to_string());
    }
    if let Some(env) = a.get_env() {
        facts.push(format!("env `{}`", env.to_string_lossy()));
    }
    let defaults: Vec<String> = a
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if takes && !defaults.is_empty() {
        facts.push(format!("default `{}`", defaults.join(",")));
    }
    let possible: Vec<String> = a
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| format!("`{}`", v.get_name()))
        .collect();
    if takes && !possible.is_empty() {
        facts.push(format!("one of {}", possible.join(", ")));
    }
    let help = a
        .get_long_help()
        .or(a.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let facts = if facts.is_empty() {
        String::new()
    } else {
        format!(" ({})", facts.join("; "))
    };
    let _ = writeln!(out, "- `{spelling}`{facts}: {}", indent(&escape(help.trim())));
}

fn visible(cmd: &Command) -> impl Iterator<Item = &Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

/// A GitHub-style heading anchor of `` `name` ``.
fn anchor(name: &str) -> String {
    name.chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => Some(c),
            'A'..='Z' => Some(c.to_ascii_lowercase()),
            ' ' => Some('-'),
            _ => None,
        })
        .collect()
}

/// `<` and `>` outside code spans as entities, so that `<data-dir>` in a help
/// text reads as text and not as an HTML tag.
fn escape(s: &str) -> String {
    s.split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 0 {
                part.replace('<', "&lt;").replace('>', "&gt;")
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("`")
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Continuation lines of a list item, indented under it.
fn indent(s: &str) -> String {
    s.lines().map(str::trim_end).collect::<Vec<_>>().join("\n  ")
}
