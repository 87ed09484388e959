//! What a failed request gets: a status and a JSON body naming the field at
//! fault, `{"error": {"status": 400, "field": "vectors[3]", "message": "…"}}`,
//! with no absolute path of the server's machine in it ([`Scrub`]).

use std::path::Path;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use stabspace_index::IndexError;

use crate::error::Error;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub field: Option<String>,
    pub message: String,
}

impl ApiError {
    /// 400: a field of the request is wrong.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            field: None,
            message: message.into(),
        }
    }

    /// The library's error: bad input is 400, what the database does not hold 422, an
    /// unreachable database 503, a damaged partition or anything else 500.
    pub fn library(e: Error) -> Self {
        let status = match &e {
            Error::Index(
                IndexError::BadQuery(_)
                | IndexError::WrongDimension { .. }
                | IndexError::NonFinite { .. }
                | IndexError::ZeroVector { .. }
                | IndexError::BadParams(_),
            ) => StatusCode::BAD_REQUEST,
            Error::Invalid(_)
            | Error::OtherJointModel { .. }
            | Error::MixedSpaces { .. }
            | Error::UnknownModel { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Unreachable { .. } | Error::Database { .. } | Error::NoDatabase { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::library(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {
                "status": self.status.as_u16(),
                "field": self.field,
                "message": self.message,
            }
        });
        (self.status, Json(body)).into_response()
    }
}

/// Takes the absolute paths of the server's data directory and database file
/// out of what clients read: a path under the data directory reads relative
/// to it (`index/MODEL/SET.stabidx`), the SQLite file by its name.
#[derive(Clone, Debug, Default)]
pub struct Scrub {
    /// (what, replacement), applied in order.
    pairs: Vec<(String, String)>,
}

impl Scrub {
    pub fn new(data_dir: &Path, db_label: &str) -> Scrub {
        let mut pairs = Vec::new();
        let file = db_label
            .strip_prefix("sqlite://")
            .or_else(|| db_label.strip_prefix("sqlite:"))
            .map(|rest| rest.split('?').next().unwrap_or(rest));
        if let Some(file) = file.filter(|f| f.starts_with('/')) {
            let name = Path::new(file).file_name().map_or_else(
                || "the database".to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            pairs.push((db_label.to_string(), format!("sqlite:{name}")));
            pairs.push((file.to_string(), name));
        }
        let dir = data_dir.to_string_lossy().trim_end_matches('/').to_string();
        if dir.starts_with('/') {
            pairs.push((format!("{dir}/"), String::new()));
            pairs.push((dir, "the data directory".into()));
        }
        Scrub { pairs }
    }

    /// Also show the partition directory `dir` (when it is not under the data
    /// directory) as `index/…`, as partitions under the data directory show.
    pub fn with_partition_dir(mut self, dir: &Path) -> Scrub {
        let dir = dir.to_string_lossy().trim_end_matches('/').to_string();
        if dir.starts_with('/') && !self.pairs.iter().any(|(from, _)| dir.starts_with(from.as_str())) {
            // Before the data directory's pairs: the longer, more specific path first.
            self.pairs.insert(0, (dir.clone(), "the partition store".into()));
            self.pairs.insert(0, (format!("{dir}/"), "index/".into()));
        }
        self
    }

    pub fn text(&self, s: &str) -> String {
        let mut out = s.to_string();
        for (from, to) in &self.pairs {
            if out.contains(from.as_str()) {
                out = out.replace(from.as_str(), to);
            }
        }
        out
    }

    /// Every string in a JSON value.
    pub fn json(&self, v: &mut serde_json::Value) {
        use serde_json::Value;
        match v {
            Value::String(s) if self.pairs.iter().any(|(from, _)| s.contains(from.as_str())) => {
                *s = self.text(s);
            }
            Value::Array(a) => a.iter_mut().for_each(|x| self.json(x)),
            Value::Object(m) => m.values_mut().for_each(|x| self.json(x)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_makes_paths_relative_to_the_data_dir() {
        let s = Scrub::new(Path::new("/srv/data/"), "sqlite:///srv/data/stabspace.db");
        assert_eq!(
            s.text("/srv/data/index/m/s.stabidx: bad checksum"),
            "index/m/s.stabidx: bad checksum"
        );
        assert_eq!(
            s.text("database error on sqlite:///srv/data/stabspace.db: locked"),
            "database error on sqlite:stabspace.db: locked"
        );
        assert_eq!(
            s.text("partitions under /srv/data"),
            "partitions under the data directory"
        );
        let mut v = serde_json::json!({"error": {"message": "/srv/data/x \"y\"", "n": 1}});
        s.json(&mut v);
        assert_eq!(v["error"]["message"], "x \"y\"");
        // Relative directories and PostgreSQL URLs name no path of the machine.
        let s = Scrub::new(Path::new("data"), "postgres://u:***@db/x");
        assert_eq!(s.text("data/index/m"), "data/index/m");
    }
}
