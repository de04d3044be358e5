//! HTTP Basic login, and who did an action.
//!
//! The credentials are compared in constant time (the `subtle` crate), user and password
//! both, so the time an answer takes does not tell how much of a guess was right (only the
//! length of what was configured may show). Browsers show their own login dialog; scripts
//! send `-u user:password`.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, FromRequestParts, Request, State},
    http::{header, request::Parts, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::Engine;
use subtle::ConstantTimeEq;

use crate::{state::App, Credentials};

/// The user a request logged in as (an extension set by [`require_login`]).
#[derive(Clone, Debug)]
pub(crate) struct User(pub(crate) String);

/// Refuses a request without the configured credentials (401 with a Basic challenge); lets
/// everything through when no login is configured.
pub(crate) async fn require_login(
    State(app): State<App>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(expected) = &app.config().auth else {
        return next.run(request).await;
    };
    match logged_in(&request, expected) {
        Some(user) => {
            request.extensions_mut().insert(User(user));
            next.run(request).await
        }
        None => {
            tracing::debug!(path = %request.uri().path(), "dashboard login refused");
            let mut response = (StatusCode::UNAUTHORIZED, "login required\n").into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Palermo\", charset=\"UTF-8\""),
            );
            response
        }
    }
}

/// The user, if the request's `Authorization` header holds the expected credentials.
fn logged_in(request: &Request, expected: &Credentials) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    let same_user = user.as_bytes().ct_eq(expected.user.as_bytes());
    let same_password = password.as_bytes().ct_eq(expected.password.as_bytes());
    bool::from(same_user & same_password).then(|| user.to_string())
}

/// Who the audit names for an action: `web:USER` after a login, else `web@PEER_IP`, else
/// `web`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Actor(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Actor, Self::Rejection> {
        if let Some(User(user)) = parts.extensions.get::<User>() {
            return Ok(Actor(format!("web:{user}")));
        }
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
        Ok(Actor(match peer {
            Some(ConnectInfo(addr)) => format!("web@{}", addr.ip()),
            None => "web".to_string(),
        }))
    }
}
