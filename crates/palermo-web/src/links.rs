//! Links that work under any mount prefix.
//!
//! The router may be served at `/`, nested at `/palermo`, or reached through a proxy that
//! strips a prefix: it cannot know the public path. So every link and redirect is relative
//! to the page it is on: [`Root`] is the way from the current path back to the dashboard's
//! root (`./` on `/failed`, `../` on `/failed/ID`), and links are `{root}failed`.
//!
//! One case needs the public path: nested with `nest("/palermo", ..)`, the root page is
//! `/palermo`, without a slash, where `./failed` would mean `/failed`; there the root is
//! the last segment of the original path (`palermo/`).

use std::convert::Infallible;

use axum::{
    extract::{FromRequestParts, OriginalUri},
    http::request::Parts,
};

/// The relative path from the request's page to the dashboard's root, ending in `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Root(pub(crate) String);

impl Root {
    /// The root seen from `path` (the path inside the router, prefix stripped).
    pub(crate) fn of(path: &str) -> Root {
        let depth = path.trim_start_matches('/').matches('/').count();
        if depth == 0 {
            Root("./".into())
        } else {
            Root("../".repeat(depth))
        }
    }

    /// A link to `page` (relative to the root: `failed?queue=mail`).
    pub(crate) fn to(&self, page: &str) -> String {
        format!("{}{page}", self.0)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Root {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Root, Infallible> {
        let inner = parts.uri.path();
        if matches!(inner, "" | "/") {
            if let Some(OriginalUri(original)) = parts.extensions.get::<OriginalUri>() {
                let path = original.path();
                if !path.ends_with('/') {
                    let last = path.rsplit('/').next().unwrap_or("");
                    return Ok(Root(format!("{last}/")));
                }
            }
        }
        Ok(Root::of(inner))
    }
}

/// Whether `target` may be redirected to after an action: a page of this dashboard,
/// relative to its root (`failed?queue=mail`), never another site or an absolute path.
pub(crate) fn is_local_page(target: &str) -> bool {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let known = ["", "failed", "queues", "workers"];
    let first = path.split('/').next().unwrap_or("");
    known.contains(&first)
        && !target.starts_with('/')
        && !target.contains("//")
        && !target.contains('\\')
        && target.chars().all(|c| c.is_ascii_graphic())
        && !path.split('/').any(|segment| segment == "..")
}

/// Percent-encodes a query value.
pub(crate) fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Percent-encodes one path segment (a space is `%20` there, not `+`).
pub(crate) fn segment(text: &str) -> String {
    encode(text).replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots() {
        assert_eq!(Root::of("/").0, "./");
        assert_eq!(Root::of("/failed").0, "./");
        assert_eq!(Root::of("/failed/abc").0, "../");
        assert_eq!(Root::of("/api/failed/abc/x").0, "../../../");
        assert_eq!(Root::of("/failed/").to("queues"), "../queues");
    }

    #[test]
    fn local_pages() {
        for ok in ["", "failed", "failed?queue=a%2Fb", "queues/mail", "workers"] {
            assert!(is_local_page(ok), "{ok}");
        }
        assert!(
            !is_local_page("failed?q=é"),
            "only ASCII (a Location header)"
        );
        for bad in [
            "//evil.com",
            "https://evil.com",
            "/failed",
            "failed/../../x",
            "\\\\evil",
            "api/x",
        ] {
            assert!(!is_local_page(bad), "{bad}");
        }
    }
}
