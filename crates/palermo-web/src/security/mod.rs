//! The dashboard's defences, one file each: the cross-origin check on state changes
//! ([`csrf`]).

pub(crate) mod csrf;
