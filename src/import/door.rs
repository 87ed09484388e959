//! What an import keeps across the rows of one file: the ids in the database
//! that rows name, and the keys seen so far (as hashes), to find a key given
//! twice.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

use super::text::quote;
use crate::error::Result;
use crate::storage::bulk::{TableSpec, Value};
use crate::storage::scenarios::each_scenario_id;
use crate::storage::{Db, Tx};

/// State kept across the rows of one file.
pub(super) struct Door {
    /// The ids in the database that rows of this kind name
    /// ([`super::ImportKind::known_ids`]).
    pub(super) known: Option<HashSet<String>>,
    /// Ids named that are not in `known`, where that is a warning.
    pub(super) unknown: BTreeSet<String>,
    pub(super) keys: Keys,
    /// Scenario paths: the scenario ids of each set named so far, as hashes
    /// (empty for a set with no scenarios), read when a set is first named.
    pub(super) sets: HashMap<String, IdHashes>,
    /// Scenario paths: the (set, scenario) of the last row, known to be in `scenarios`.
    pub(super) last_scenario: Option<(String, String)>,
}

/// A set of ids as 128-bit hashes ([`Keys::id_hash`]): 16 bytes an id.
pub(super) type IdHashes = HashSet<KeyHash, BuildHasherDefault<FirstWord>>;

/// The table keys seen so far in a file, as 128-bit hashes mapped to the line
/// that first had them: 24 bytes a row (about 100 MB at the hash table's worst
/// load for 2 million rows), never the keys themselves. Two independently keyed
/// SipHash functions give the 128 bits; a false match is about as likely as
/// 2⁻¹²⁸ per pair of rows.
pub(super) struct Keys {
    spec: &'static TableSpec,
    /// Positions of the key columns in a row.
    cols: Vec<usize>,
    hashers: [RandomState; 2],
    seen: HashMap<KeyHash, u64, BuildHasherDefault<FirstWord>>,
}

/// 128 bits of key hash; the map's own hash is the first word, already random.
#[derive(PartialEq, Eq)]
pub(super) struct KeyHash(u64, u64);

impl Hash for KeyHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0);
    }
}

/// A hasher that passes through the one u64 it is given.
#[derive(Default)]
pub(super) struct FirstWord(u64);

impl Hasher for FirstWord {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Keys {
    pub(super) fn new(spec: &'static TableSpec) -> Self {
        let cols = spec
            .key
            .iter()
            .filter_map(|k| spec.columns.iter().position(|(c, _)| c == k))
            .collect();
        Keys {
            spec,
            cols,
            hashers: [RandomState::new(), RandomState::new()],
            seen: HashMap::default(),
        }
    }

    pub(super) fn hash(&self, row: &[Value]) -> KeyHash {
        let [a, b] = self.hashers.each_ref().map(|s| {
            let mut h = s.build_hasher();
            for &i in &self.cols {
                match &row[i] {
                    Value::Null => h.write_u8(0),
                    Value::Text(s) | Value::Json(s) => {
                        h.write_u8(1);
                        s.hash(&mut h);
                    }
                    Value::Date(d) => {
                        h.write_u8(2);
                        d.hash(&mut h);
                    }
                    Value::Int(n) => {
                        h.write_u8(3);
                        n.hash(&mut h);
                    }
                    Value::Float(x) => {
                        h.write_u8(4);
                        x.to_bits().hash(&mut h);
                    }
                    Value::Bytes(v) => {
                        h.write_u8(5);
                        v.hash(&mut h);
                    }
                }
            }
            h.finish()
        });
        KeyHash(a, b)
    }

    /// The 128-bit hash of one id, keyed as the row keys are.
    pub(super) fn id_hash(&self, id: &str) -> KeyHash {
        let [a, b] = self.hashers.each_ref().map(|s| s.hash_one(id));
        KeyHash(a, b)
    }

    /// The scenario ids of one set, hashed, streamed from the database inside
    /// the import's transaction (never all held as text).
    pub(super) async fn scenario_ids(&self, db: &Db, tx: &mut Tx, set: &str) -> Result<IdHashes> {
        let mut ids = IdHashes::default();
        each_scenario_id(tx, set, |id| {
            ids.insert(self.id_hash(id));
        })
        .await
        .map_err(|e| db.err(e))?;
        Ok(ids)
    }

    /// Record the row's key at `line`; the line that had it first, if any.
    pub(super) fn first_line(&mut self, row: &[Value], line: u64) -> Option<u64> {
        let key = self.hash(row);
        match self.seen.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => Some(*e.get()),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(line);
                None
            }
        }
    }

    /// The key of a row as `column value` pairs.
    pub(super) fn describe(&self, row: &[Value]) -> String {
        self.cols
            .iter()
            .map(|&i| {
                let value = match &row[i] {
                    Value::Text(s) | Value::Json(s) => quote(s),
                    Value::Date(d) => d.to_string(),
                    Value::Int(n) => n.to_string(),
                    Value::Float(x) => x.to_string(),
                    Value::Null => "empty".to_string(),
                    Value::Bytes(v) => format!("{} bytes", v.len()),
                };
                format!("{} {value}", self.spec.columns[i].0)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}
