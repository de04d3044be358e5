//! The cross-origin check every POST passes: tower-http's `CsrfLayer` (Go 1.25's
//! CrossOriginProtection): `Sec-Fetch-Site: same-origin` (or `none`) passes; without it the
//! `Origin` must name the request's own host (so plain-HTTP LAN addresses work) or a trusted
//! origin; a request with neither header is not from a browser form and passes (curl, the
//! API from scripts; the login still applies). GET, HEAD and OPTIONS never change state and
//! are not checked.

use axum::{
    body::Body,
    http::{Response, StatusCode},
    response::IntoResponse,
};
use tower_http::csrf::{ConfigError, CsrfLayer, ProtectionError};

use crate::error::WebError;

/// The answer to a refused request.
pub(crate) type Refusal = fn(ProtectionError) -> Response<Body>;

/// The layer, with the configured trusted origins.
pub(crate) fn layer(trusted_origins: &[String]) -> Result<CsrfLayer<Refusal>, ConfigError> {
    let layer = trusted_origins
        .iter()
        .try_fold(CsrfLayer::new(), |layer, origin| {
            layer.add_trusted_origin(origin.trim())
        })?;
    Ok(layer.with_rejection_response(refuse as Refusal))
}

/// 403 with a message that says what to do (rendered as a page, or JSON under `/api`).
fn refuse(error: ProtectionError) -> Response<Body> {
    tracing::warn!(%error, "cross-origin request refused");
    let mut response = WebError::BadRequest(format!(
        "{error}: this request came from another site and was refused. Submit the form from \
         the dashboard itself; behind a proxy that changes the Host header, add the public \
         origin to the trusted origins (--trusted-origin)"
    ))
    .into_response();
    *response.status_mut() = StatusCode::FORBIDDEN;
    response
}
