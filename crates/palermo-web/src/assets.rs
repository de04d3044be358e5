//! The stylesheet and script, compiled into the binary and served under names that carry
//! a hash of their content (`app.3f9a0c12.css`): a browser may keep them for a year, and a
//! new build links new names. No CDN, no build step.

use axum::{
    extract::Path,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};

/// One static file.
pub(crate) struct Asset {
    /// The name pages link to, with the content hash.
    pub(crate) name: &'static str,
    content: &'static str,
    content_type: &'static str,
}

const CSS: &str = include_str!("../web/static/app.css");
const JS: &str = include_str!("../web/static/app.js");

/// FNV-1a, at compile time: a stable fingerprint of a file's bytes.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `{stem}.{hash}.{ext}` as a static string (built once).
fn hashed(stem: &str, content: &str, ext: &str) -> &'static str {
    let name = format!("{stem}.{:08x}.{ext}", fnv1a(content.as_bytes()) as u32);
    Box::leak(name.into_boxed_str())
}

/// The dashboard's stylesheet.
pub(crate) fn css() -> &'static Asset {
    static ASSET: std::sync::OnceLock<Asset> = std::sync::OnceLock::new();
    ASSET.get_or_init(|| Asset {
        name: hashed("app", CSS, "css"),
        content: CSS,
        content_type: "text/css; charset=utf-8",
    })
}

/// The dashboard's script (live refresh, confirmations, selection).
pub(crate) fn js() -> &'static Asset {
    static ASSET: std::sync::OnceLock<Asset> = std::sync::OnceLock::new();
    ASSET.get_or_init(|| Asset {
        name: hashed("app", JS, "js"),
        content: JS,
        content_type: "text/javascript; charset=utf-8",
    })
}

/// `GET /static/{name}`: the file if `name` is a current hashed name, else 404.
pub(crate) async fn serve(Path(name): Path<String>) -> Response {
    let Some(asset) = [css(), js()].into_iter().find(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        asset.content,
    )
        .into_response()
}
