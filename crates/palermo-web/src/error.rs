//! The dashboard's errors and their HTTP answers.
//!
//! Page handlers return [`WebError`]: its response carries the status and the message as a
//! [`ErrorPage`] extension, and the page layer ([`crate::pages::render_errors`]) renders it
//! inside the layout (it knows the request's path, so the links work). API handlers wrap
//! it in [`ApiError`], which answers JSON.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use palermo_store::{Rejection, StoreError};
use serde_json::json;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// The store or the broker failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A template did not render.
    #[error("rendering the page failed: {0}")]
    Render(#[from] askama::Error),
    /// No such failure or queue.
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be read (a bad filter, an empty selection).
    #[error("{0}")]
    BadRequest(String),
    /// Some of the failures named cannot be acted on; nothing was changed.
    #[error("nothing was changed: {}", list(.0))]
    Stale(Vec<Rejection>),
    /// Something that should not fail did.
    #[error("{0}")]
    Internal(String),
    /// Actions are switched off.
    #[error("the dashboard is read-only: actions are switched off (--read-only)")]
    ReadOnly,
}

fn list(rejections: &[Rejection]) -> String {
    rejections
        .iter()
        .map(|r| format!("{}: {}", r.id, r.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

impl WebError {
    fn status(&self) -> StatusCode {
        match self {
            WebError::Store(StoreError::Rejected(_)) | WebError::Stale(_) => StatusCode::CONFLICT,
            WebError::Store(StoreError::Broker(_)) => StatusCode::BAD_GATEWAY,
            WebError::Store(StoreError::UnknownWorker { .. })
            | WebError::Store(StoreError::UnknownSchedule { .. }) => StatusCode::NOT_FOUND,
            WebError::Store(_) | WebError::Render(_) | WebError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::ReadOnly => StatusCode::FORBIDDEN,
        }
    }

    fn rejections(&self) -> &[Rejection] {
        match self {
            WebError::Stale(r) | WebError::Store(StoreError::Rejected(r)) => r,
            _ => &[],
        }
    }

    fn log(&self) {
        if self.status().is_server_error() {
            tracing::error!(error = %self, "dashboard request failed");
        }
    }
}

/// The message of a failed page request, for the page layer to render.
#[derive(Clone, Debug)]
pub(crate) struct ErrorPage {
    pub(crate) message: String,
    pub(crate) rejections: Vec<Rejection>,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        self.log();
        let page = ErrorPage {
            message: crate::text::cell(&self.to_string(), 4000),
            rejections: self
                .rejections()
                .iter()
                .map(|r| Rejection {
                    id: crate::text::cell(&r.id, 200),
                    reason: crate::text::cell(&r.reason, 1000),
                })
                .collect(),
        };
        let mut response = (self.status(), self.to_string()).into_response();
        response.extensions_mut().insert(page);
        response
    }
}

/// A [`WebError`] answered as JSON: `{"error": "...", "rejected": [{"id", "reason"}]}`.
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) WebError);

impl<E: Into<WebError>> From<E> for ApiError {
    fn from(error: E) -> Self {
        ApiError(error.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.log();
        let rejected: Vec<_> = self
            .0
            .rejections()
            .iter()
            .map(|r| json!({"id": r.id, "reason": r.reason}))
            .collect();
        let body = json!({"error": self.0.to_string(), "rejected": rejected});
        (self.0.status(), Json(body)).into_response()
    }
}
