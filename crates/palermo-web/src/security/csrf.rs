//! The cross-origin check every POST passes: tower-http's `CsrfLayer` (Go 1.25's
//! CrossOriginProtection): `Sec-Fetch-Site: same-origin` (or `none`) passes; without it the
//! `Origin` must name the request's own host (so plain-HTTP LAN addresses work) or a trusted
//! origin; a request with neither header is not from a browser form and passes (curl, the
//! API from scripts; the login still applies). GET, HEAD and OPTIONS never change state and
//! are not checked.

use tower_http::csrf::{ConfigError, CsrfLayer};

/// The layer, with the configured trusted origins.
pub(crate) fn layer(trusted_origins: &[String]) -> Result<CsrfLayer, ConfigError> {
    trusted_origins
        .iter()
        .try_fold(CsrfLayer::new(), |layer, origin| {
            layer.add_trusted_origin(origin.trim())
        })
}
