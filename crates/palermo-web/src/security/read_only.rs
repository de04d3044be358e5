//! Read-only mode: every request that could change something (anything but GET, HEAD and
//! OPTIONS) is refused with 403 before it reaches a handler, whatever the route. The pages
//! also hide their buttons; this is what makes the mode hold for the API and for forms
//! submitted from an old page.

use axum::{
    extract::{Request, State},
    http::Method,
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{
    error::{ApiError, WebError},
    state::App,
};

pub(crate) async fn refuse_actions(
    State(app): State<App>,
    request: Request,
    next: Next,
) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if safe || !app.config().read_only {
        return next.run(request).await;
    }
    tracing::info!(path = %request.uri().path(), "action refused: read-only");
    if request.uri().path().starts_with("/api/") {
        ApiError(WebError::ReadOnly).into_response()
    } else {
        WebError::ReadOnly.into_response()
    }
}
