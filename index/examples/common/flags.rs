//! The examples' command lines: `--key value` pairs and bare `--switch`es.

use std::collections::HashMap;

/// `--key value` and `--switch` (an empty value) from `args`.
pub fn flags(args: impl IntoIterator<Item = String>) -> HashMap<String, String> {
    let rest: Vec<String> = args.into_iter().collect();
    let mut flags = HashMap::new();
    let mut i = 0;
    while i < rest.len() {
        let key = rest[i].trim_start_matches("--").to_string();
        if i + 1 < rest.len() && !rest[i + 1].starts_with("--") {
            flags.insert(key, rest[i + 1].clone());
            i += 2;
        } else {
            flags.insert(key, String::new());
            i += 1;
        }
    }
    flags
}
