//! `serve --api-key-file`: who may ask. Every route but `/healthz` wants
//! `Authorization: Bearer KEY` with one of the file's keys; anything else is a
//! 401 with the server's JSON error body and `WWW-Authenticate: Bearer`.
//!
//! The keys are held only as SHA-256 digests, and a presented key is compared
//! with every digest in constant time ([`subtle`]), with no early exit: how
//! long a refusal takes says nothing of which key, or how much of one,
//! matched. Hashing first also hides the keys' lengths. No key (nor the
//! header carrying one) is ever put in a message, a log line or a metric
//! label.

use std::path::Path;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::Body as _;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::error::ApiError;
use super::{api, linger, metrics, App};
use crate::error::{Error, Result};

/// The shortest key accepted: a shorter one could be guessed.
pub const MIN_KEY_CHARS: usize = 16;

/// The keys of `--api-key-file`, as digests.
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl ApiKeys {
    /// Read `path`: one key per line; blank lines and lines starting with `#`
    /// are skipped, whitespace around a key is trimmed. A file that cannot be
    /// read, holds no key, or holds a key shorter than [`MIN_KEY_CHARS`] or
    /// with whitespace or a control character inside is refused, naming the
    /// file and line (never the key).
    pub fn from_file(path: &Path) -> Result<ApiKeys> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Invalid(format!("--api-key-file {shown}: cannot read it: {e}")))?;
        let keys = Self::parse(&text).map_err(|e| Error::Invalid(format!("--api-key-file {shown}: {e}")))?;
        Ok(keys)
    }

    /// The keys of a file's text; the error names the line.
    fn parse(text: &str) -> std::result::Result<ApiKeys, String> {
        let mut digests = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let key = line.trim();
            if key.is_empty() || key.starts_with('#') {
                continue;
            }
            let line = n + 1;
            if let Some(at) = key.chars().position(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "line {line}: the key has whitespace or a control character at character {}; a key is \
                     one word of visible characters",
                    at + 1
                ));
            }
            let chars = key.chars().count();
            if chars < MIN_KEY_CHARS {
                return Err(format!(
                    "line {line}: the key is {chars} characters long; keys must be at least {MIN_KEY_CHARS} \
                     (e.g. `openssl rand -hex 32`)"
                ));
            }
            let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
            if !digests.contains(&digest) {
                digests.push(digest);
            }
        }
        if digests.is_empty() {
            return Err(
                "the file holds no key (one key per line; blank lines and lines starting with '#' are skipped)"
                    .to_string(),
            );
        }
        Ok(ApiKeys { digests })
    }

    /// How many distinct keys admit requests.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether `presented` is one of the keys: its digest compared with every
    /// key's, each comparison in constant time, all of them always made.
    fn admits(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found = Choice::from(0);
        for d in &self.digests {
            found |= d.ct_eq(&digest);
        }
        found.into()
    }
}

/// Why a request is refused.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    Missing,
    Malformed,
    WrongKey,
}

/// The key of an `Authorization` header: `Bearer` (any case), spaces, then
/// one word.
fn bearer(value: &HeaderValue) -> std::result::Result<&[u8], Refusal> {
    let v = value.as_bytes();
    let scheme = b"bearer";
    if v.len() <= scheme.len() || !v[..scheme.len()].eq_ignore_ascii_case(scheme) || v[scheme.len()] != b' ' {
        return Err(Refusal::Malformed);
    }
    let key = v[scheme.len()..].trim_ascii();
    if key.is_empty() || key.iter().any(|b| b.is_ascii_whitespace()) {
        return Err(Refusal::Malformed);
    }
    Ok(key)
}

/// Refuse a request without one of the keys, before its body is read and
/// before it waits for a turn (this layer wraps `admit`, the body limit and
/// the concurrency limit): a flood without a key holds neither memory nor
/// a permit. `/healthz` is open (load balancers probe it). Refusals are
/// counted by route template in `stabspace_unauthorized_total`.
pub(super) async fn authenticate(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let Some(keys) = app.api_keys.as_ref() else {
        return next.run(req).await;
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    if route.as_deref() == Some(api::HEALTHZ_ROUTE) {
        return next.run(req).await;
    }
    let refusal = match req.headers().get(header::AUTHORIZATION).map(bearer) {
        None => Refusal::Missing,
        Some(Err(r)) => r,
        Some(Ok(key)) if keys.admits(key) => return next.run(req).await,
        Some(Ok(_)) => Refusal::WrongKey,
    };
    app.metrics
        .unauthorized
        .get_or_create(&metrics::RouteLabels {
            route: route.unwrap_or_else(|| "unmatched".to_string()),
        })
        .inc();
    let message = match refusal {
        Refusal::Missing => "this server requires an API key: send the header `Authorization: Bearer <key>`",
        Refusal::Malformed => {
            "malformed Authorization header: this server wants an API key as `Authorization: Bearer <key>`"
        }
        Refusal::WrongKey => "the API key is not one this server accepts",
    };
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    let challenge = if refusal == Refusal::Missing {
        HeaderValue::from_static("Bearer realm=\"stabspace\"")
    } else {
        HeaderValue::from_static("Bearer realm=\"stabspace\", error=\"invalid_token\"")
    };
    response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
    if !req.body().is_end_stream() {
        // A body is on its way: discard it (bounded), so that the client
        // reads the 401 rather than a reset, and close the connection.
        linger(req.into_body().into_data_stream(), app.limits.max_body_bytes);
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123";

    #[test]
    fn keys_are_read_one_a_line_with_comments_and_blanks_skipped() {
        let keys = ApiKeys::parse(&format!("# ops\n\n  {KEY}  \n{KEY}\nfedcba9876543210fedc\n")).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys.admits(KEY.as_bytes()));
        assert!(keys.admits(b"fedcba9876543210fedc"));
        assert!(!keys.admits(b"0123456789abcdef012"));
        assert!(!keys.admits(b""));
    }

    #[test]
    fn bad_files_name_the_line_and_never_the_key() {
        for (text, want) in [
            ("# nothing\n\n", "holds no key"),
            (
                "0123456789abcdef0123\nshort-key-123\n",
                "line 2: the key is 13 characters long",
            ),
            ("\n0123456789 abcdef0123\n", "line 2: the key has whitespace"),
            (
                "0123456789abcdef\x070123\n",
                "line 1: the key has whitespace or a control character",
            ),
        ] {
            let e = ApiKeys::parse(text).err().expect(text);
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains("short-key") && !e.contains("0123456789"), "{e}");
        }
    }

    #[test]
    fn bearer_headers_are_parsed_strictly() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(bearer(&h(&format!("Bearer {KEY}"))), Ok(KEY.as_bytes()));
        assert_eq!(bearer(&h(&format!("bearer   {KEY}"))), Ok(KEY.as_bytes()));
        for bad in [
            "Bearer",
            "Bearer ",
            "Basic abc",
            &format!("Bearer{KEY}"),
            &format!("Bearer {KEY} x"),
        ] {
            assert_eq!(bearer(&h(bad)), Err(Refusal::Malformed), "{bad:?}");
        }
    }
}
