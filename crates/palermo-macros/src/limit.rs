//! `concurrency = 3`, `rate = "10/s"`, `key = "account_id"` or `key_fn = path::to::function`,
//! `limit = "name"`: a job's
//! fleet-wide limits, checked at compile time with the same rules as `palermo::Limit`
//! (docs/limits.md), and written as the job's `LIMIT` constant.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{spanned::Spanned, Expr, ExprLit, Lit};

#[derive(Default)]
pub(crate) struct Limit {
    concurrency: Option<u32>,
    /// Count and window in ms.
    rate: Option<(u32, u64)>,
    key: Option<(String, Span)>,
    /// The key function's path, and its text.
    key_fn: Option<(syn::Path, String)>,
    name: Option<String>,
}

impl Limit {
    pub fn parse(&mut self, option: &str, value: &Expr) -> syn::Result<()> {
        match option {
            "concurrency" => {
                let Expr::Lit(ExprLit {
                    lit: Lit::Int(n), ..
                }) = value
                else {
                    return Err(syn::Error::new(
                        value.span(),
                        "concurrency takes a whole number from 1 to 1000, e.g. 3",
                    ));
                };
                let n: u32 = n.base10_parse()?;
                if !(1..=1000).contains(&n) {
                    return Err(syn::Error::new(
                        value.span(),
                        "concurrency takes a whole number from 1 to 1000, e.g. 3",
                    ));
                }
                self.concurrency = Some(n);
            }
            "rate" => {
                let (text, span) = super::string(value)?;
                self.rate = Some(parse_rate(&text).map_err(|e| syn::Error::new(span, e))?);
            }
            "key" => {
                let (key, span) = super::string(value)?;
                self.key = Some((key, span));
            }
            "key_fn" => {
                let Expr::Path(path) = value else {
                    return Err(syn::Error::new(
                        value.span(),
                        "key_fn takes the path of a function `fn(&Job) -> String`, e.g. key_fn = region_of",
                    ));
                };
                let text = quote!(#path).to_string().replace(' ', "");
                self.key_fn = Some((path.path.clone(), text));
            }
            _ => {
                let (name, span) = super::string(value)?;
                if name.is_empty() || name.len() > 150 {
                    return Err(syn::Error::new(
                        span,
                        "a limit's name must be 1 to 150 bytes long",
                    ));
                }
                self.name = Some(name);
            }
        }
        Ok(())
    }

    /// A key names one of the job's serialized arguments, and comes with a limit.
    pub fn check_key(&self, arguments: &[syn::Ident]) -> syn::Result<()> {
        let limited = self.concurrency.is_some() || self.rate.is_some();
        if let Some((key, span)) = &self.key {
            if !arguments.iter().any(|a| a == key) {
                return Err(syn::Error::new(
                    *span,
                    format!("key {key:?} is not one of the job's arguments"),
                ));
            }
        }
        if let (Some((_, span)), Some(_)) = (&self.key, &self.key_fn) {
            return Err(syn::Error::new(
                *span,
                "give key or key_fn, not both: the limit holds per one key",
            ));
        }
        if !limited && (self.key.is_some() || self.key_fn.is_some() || self.name.is_some()) {
            return Err(syn::Error::new(
                Span::call_site(),
                "key, key_fn and limit need concurrency = N or rate = \"N/s\"",
            ));
        }
        Ok(())
    }

    /// The `LIMIT` constant of the `Job` impl of `job` (nothing without a limit: the
    /// default). A key function is wrapped in one that decodes the job's body first.
    pub fn constant(&self, job: &syn::Ident) -> TokenStream {
        if self.concurrency.is_none() && self.rate.is_none() {
            return TokenStream::new();
        }
        let some_or_none = |value: Option<TokenStream>| match value {
            Some(v) => quote!(::core::option::Option::Some(#v)),
            None => quote!(::core::option::Option::None),
        };
        let concurrency = some_or_none(self.concurrency.map(|n| quote!(#n)));
        let rate = some_or_none(self.rate.map(|(count, ms)| {
            quote!(::palermo::Rate { count: #count, per: ::core::time::Duration::from_millis(#ms) })
        }));
        let key = some_or_none(
            self.key
                .as_ref()
                .map(|(k, _)| quote!(::std::borrow::Cow::Borrowed(#k))),
        );
        let key_fn = some_or_none(self.key_fn.as_ref().map(|(path, text)| {
            quote! {
                ::palermo::KeyFn {
                    name: #text,
                    compute: {
                        fn __palermo_key_of(
                            format: ::palermo::Format,
                            body: &[u8],
                        ) -> ::core::option::Option<::std::string::String> {
                            let job: #job = format.decode(body).ok()?;
                            ::core::option::Option::Some(#path(&job))
                        }
                        __palermo_key_of
                    },
                }
            }
        }));
        let name = some_or_none(
            self.name
                .as_ref()
                .map(|n| quote!(::std::borrow::Cow::Borrowed(#n))),
        );
        quote! {
            const LIMIT: ::palermo::Limit = ::palermo::Limit {
                concurrency: #concurrency,
                rate: #rate,
                key: #key,
                key_fn: #key_fn,
                name: #name,
            };
        }
    }
}

/// `"10/s"`, `"600/min"`, `"5/h"`, `"3/10s"`: count and window in ms, the window from 1 s to
/// 1 day, the count from 1 to 100,000 (as `palermo::Rate::parse`).
fn parse_rate(text: &str) -> Result<(u32, u64), String> {
    let usage = format!("rate {text:?} is not like \"10/s\", \"600/min\" or \"3/10s\"");
    let (count, per) = text.split_once('/').ok_or_else(|| usage.clone())?;
    let count: u32 = count.trim().parse().map_err(|_| usage.clone())?;
    let ms = match per.trim() {
        "s" | "sec" | "second" => 1_000,
        "m" | "min" | "minute" => 60_000,
        "h" | "hour" => 3_600_000,
        "d" | "day" => 86_400_000,
        other => super::parse_duration_ms(other).map_err(|e| format!("rate window {e}"))?,
    };
    if !(1..=100_000).contains(&count) {
        return Err(format!("rate {text:?}: 1 to 100000 starts per window"));
    }
    if !(1_000..=86_400_000).contains(&ms) {
        return Err(format!(
            "rate {text:?}: the window must be from 1 s to 1 day"
        ));
    }
    Ok((count, ms))
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10/s"), Ok((10, 1_000)));
        assert_eq!(parse_rate("600/min"), Ok((600, 60_000)));
        assert_eq!(parse_rate("3/10s"), Ok((3, 10_000)));
        assert!(parse_rate("10").is_err());
        assert!(parse_rate("0/s").unwrap_err().contains("1 to"));
        assert!(parse_rate("5/10ms").unwrap_err().contains("1 s"));
    }
}
