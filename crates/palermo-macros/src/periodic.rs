//! The periodic options of `#[job]` (`cron`, `every`, `tz`, `catch_up`), kept apart from the
//! others: a periodic job's arguments struct derives `Default`, and the macro submits a
//! `PeriodicRegistration` that the worker's scheduler reads (docs/scheduling.md).

use quote::quote;
use syn::Expr;

use crate::{parse_duration_ms, string};

/// The periodic options: `cron = "0 */5 * * * *"` or `every = "30s"`, with `tz` and
/// `catch_up`. The cron expression and the zone are checked when the worker is built.
#[derive(Default)]
pub(crate) struct Periodic {
    /// `("cron" | "every", expression)`.
    pub(crate) when: Option<(&'static str, String)>,
    pub(crate) tz: Option<String>,
    pub(crate) catch_up: Option<String>,
}

/// One of `cron`, `every`, `tz`, `catch_up`.
pub(crate) fn parse(periodic: &mut Periodic, key: &str, value: &Expr) -> syn::Result<()> {
    let (text, span) = string(value)?;
    match key {
        "cron" | "every" => {
            if periodic.when.is_some() {
                return Err(syn::Error::new(span, "give either cron or every, once"));
            }
            if key == "every" {
                let ms = parse_duration_ms(&text)
                    .map_err(|e| syn::Error::new(span, format!("every {e}")))?;
                if ms < 1000 {
                    return Err(syn::Error::new(span, "every takes at least \"1s\""));
                }
            }
            periodic.when = Some((if key == "cron" { "cron" } else { "every" }, text));
        }
        "tz" => periodic.tz = Some(text),
        _ => {
            if !matches!(text.as_str(), "all" | "latest" | "none") {
                return Err(syn::Error::new(
                    span,
                    "catch_up is \"all\", \"latest\" (the default) or \"none\"",
                ));
            }
            periodic.catch_up = Some(text);
        }
    }
    Ok(())
}

/// For a periodic job: `Default` on the arguments struct and the schedule's registration.
pub(crate) fn items(
    periodic: &Periodic,
    struct_name: &syn::Ident,
) -> (proc_macro2::TokenStream, proc_macro2::TokenStream) {
    let Some((kind, spec)) = &periodic.when else {
        return (quote!(), quote!());
    };
    let some = |v: &Option<String>| match v {
        Some(text) => quote!(::core::option::Option::Some(#text)),
        None => quote!(::core::option::Option::None),
    };
    let (tz, catch_up) = (some(&periodic.tz), some(&periodic.catch_up));
    let registration = quote! {
        ::palermo::__private::inventory::submit! {
            ::palermo::__private::PeriodicRegistration {
                kind: #kind,
                spec: #spec,
                tz: #tz,
                catch_up: #catch_up,
                entry: ::palermo::__private::PeriodicRegistration::entry::<#struct_name>,
            }
        }
    };
    (quote!(::core::default::Default,), registration)
}
