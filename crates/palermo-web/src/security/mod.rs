//! The dashboard's defences, one file each: the cross-origin check on state changes
//! ([`csrf`]), the optional login ([`auth`]), the security headers ([`headers`]) and the
//! read-only switch ([`read_only`]). docs/dashboard.md describes the model.

pub(crate) mod auth;
pub(crate) mod csrf;
pub(crate) mod headers;
pub(crate) mod read_only;
