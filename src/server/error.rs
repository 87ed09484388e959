//! What a failed request gets: a status and a JSON body naming the field at
//! fault, `{"error": {"status": 400, "field": "vectors[3]", "message": "…"}}`.

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
            Error::Invalid(_) | Error::MixedSpaces { .. } | Error::UnknownModel { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
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
