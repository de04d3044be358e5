//! `#[palermo::job]`: turns an `async fn` into a Palermo job.
//!
//! From `async fn send_email(to: String, subject: String) -> anyhow::Result<()>` it writes
//! a struct `SendEmail { to, subject }` (the message body), its `palermo::Job` impl that calls
//! the function, and its registration, so a worker binary finds every job linked into it.
//! Arguments of type `State<T>` or `JobContext` are filled in by the worker, not serialized.

mod limit;
mod periodic;

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{format_ident, quote};
use syn::{
    parse::Parser, punctuated::Punctuated, spanned::Spanned, Expr, ExprLit, FnArg, ItemFn, Lit,
    Meta, Pat, Token, Type,
};

/// Makes an `async fn` a job. Options: `queue = "mail"` (default `"default"`),
/// `name = "wire_name"` (default the function's name), `max_attempts = 5`,
/// `timeout = "30s"` (`500ms`, `90s`, `10m`, `1h30m`, `2d`), `serializer = "json" | "msgpack"`,
/// `backoff = "5s"` (the first retry's delay, doubling up to the default cap of 6 h) or
/// `backoff = "5s..10m"` (first delay..cap). A periodic job (no arguments, or all `Default`):
/// `cron = "0 */5 * * * *"` (seconds first) or `every = "30s"`, with `tz = "Europe/Rome"`
/// (default UTC) and `catch_up = "all" | "latest" | "none"` (default latest). Fleet-wide
/// limits (docs/limits.md): `concurrency = 3`, `rate = "10/s"` (`"600/min"`, `"5/h"`,
/// `"3/10s"`), `key = "account_id"` (per value of that argument) or `key_fn = region_of`
/// (per value of `fn region_of(job: &Job) -> String`, given the job's arguments struct),
/// `limit = "name"` (shared by the jobs that name it; default the job's name).
#[proc_macro_attribute]
pub fn job(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr.into(), item) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

struct Options {
    queue: String,
    name: Option<String>,
    max_attempts: Option<u32>,
    timeout_ms: Option<u64>,
    serializer: Option<proc_macro2::TokenStream>,
    /// Base and cap in ms; the cap `None` keeps the default.
    backoff_ms: Option<(u64, Option<u64>)>,
    /// `unique = "30m"`: the lock's TTL in ms.
    unique_ms: Option<u64>,
    /// `priority = 5`.
    priority: Option<u8>,
    /// `cron`, `every`, `tz`, `catch_up`: a periodic job.
    periodic: periodic::Periodic,
    /// `concurrency`, `rate`, `key`, `key_fn`, `limit`: fleet-wide limits.
    limit: limit::Limit,
}

fn expand(
    attr: proc_macro2::TokenStream,
    item: TokenStream,
) -> syn::Result<proc_macro2::TokenStream> {
    let options = parse_options(attr)?;
    let function: ItemFn = syn::parse(item)?;
    check_signature(&function.sig)?;
    let arguments = Arguments::of(&function.sig)?;
    options.limit.check_key(&arguments.field_names)?;
    Ok(generate(&function, options, arguments))
}

/// A job is a plain `async fn`: no generics, no `self`.
fn check_signature(sig: &syn::Signature) -> syn::Result<()> {
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            "#[job] needs an `async fn`",
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "a job function cannot be generic",
        ));
    }
    Ok(())
}

/// The function's arguments: the serialized ones become the struct's fields, `State<T>` and
/// `JobContext` are filled in from the context when the job runs.
struct Arguments {
    fields: Vec<proc_macro2::TokenStream>,
    field_names: Vec<syn::Ident>,
    call_args: Vec<proc_macro2::TokenStream>,
    injected: Vec<proc_macro2::TokenStream>,
}

impl Arguments {
    fn of(sig: &syn::Signature) -> syn::Result<Self> {
        let mut arguments = Arguments {
            fields: Vec::new(),
            field_names: Vec::new(),
            call_args: Vec::new(),
            injected: Vec::new(),
        };
        for input in &sig.inputs {
            let FnArg::Typed(arg) = input else {
                return Err(syn::Error::new(
                    input.span(),
                    "a job function cannot take `self`",
                ));
            };
            let Pat::Ident(pat) = arg.pat.as_ref() else {
                return Err(syn::Error::new(
                    arg.pat.span(),
                    "job arguments must be plain names",
                ));
            };
            let ident = &pat.ident;
            let ty = &arg.ty;
            arguments.call_args.push(quote!(#ident));
            match injected_kind(ty) {
                Some(Injected::State) => arguments
                    .injected
                    .push(quote!(let #ident: #ty = __ctx.state()?;)),
                Some(Injected::Context) => arguments
                    .injected
                    .push(quote!(let #ident: #ty = __ctx.clone();)),
                None => {
                    arguments.fields.push(quote!(pub #ident: #ty));
                    arguments.field_names.push(ident.clone());
                }
            }
        }
        Ok(arguments)
    }
}

/// The `Option<...>` constants of the `Job` impl, from the options.
fn option_constants(options: &Options) -> [proc_macro2::TokenStream; 4] {
    let none = quote!(::core::option::Option::None);
    let max_attempts = match options.max_attempts {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => none.clone(),
    };
    let timeout = match options.timeout_ms {
        Some(ms) => quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#ms))),
        None => none.clone(),
    };
    let backoff = match options.backoff_ms {
        Some((base, max)) => {
            let max = match max {
                Some(ms) => quote!(::core::time::Duration::from_millis(#ms)),
                None => quote!(::palermo::Backoff::DEFAULT.max),
            };
            quote!(::core::option::Option::Some(::palermo::Backoff::exponential(
                ::core::time::Duration::from_millis(#base),
                #max,
            )))
        }
        None => none.clone(),
    };
    let format = match &options.serializer {
        Some(f) => quote!(::core::option::Option::Some(::palermo::Format::#f)),
        None => none,
    };
    [max_attempts, timeout, backoff, format]
}

/// The function as written, its arguments struct, the `Job` impl and the registration.
fn generate(function: &ItemFn, options: Options, arguments: Arguments) -> proc_macro2::TokenStream {
    let fn_name = &function.sig.ident;
    let vis = &function.vis;
    let struct_name = format_ident!(
        "{}",
        pascal_case(&fn_name.to_string()),
        span = fn_name.span()
    );
    let [max_attempts, timeout, backoff, format] = option_constants(&options);
    let uniqueness = unique_and_priority_constants(&options);
    let limit = options.limit.constant(&struct_name);
    let (default_derive, periodic) = periodic::items(&options.periodic, &struct_name);
    let wire_name = options.name.unwrap_or_else(|| fn_name.to_string());
    let queue = options.queue;
    let Arguments {
        fields,
        field_names,
        call_args,
        injected,
    } = arguments;
    let doc = format!("The arguments of the `{wire_name}` job (queue `{queue}`); enqueue one to run [`{fn_name}`].");

    quote! {
        #function

        #[doc = #doc]
        #[derive(#default_derive ::core::fmt::Debug, ::core::clone::Clone, ::palermo::__private::serde::Serialize, ::palermo::__private::serde::Deserialize)]
        #[serde(crate = "::palermo::__private::serde")]
        #vis struct #struct_name {
            #(#fields,)*
        }

        impl ::palermo::Job for #struct_name {
            const NAME: &'static str = #wire_name;
            const QUEUE: &'static str = #queue;
            const MAX_ATTEMPTS: ::core::option::Option<u32> = #max_attempts;
            const TIMEOUT: ::core::option::Option<::core::time::Duration> = #timeout;
            const BACKOFF: ::core::option::Option<::palermo::Backoff> = #backoff;
            const FORMAT: ::core::option::Option<::palermo::Format> = #format;
            #uniqueness
            #limit

            async fn run(self, __ctx: ::palermo::JobContext) -> ::palermo::JobResult {
                let Self { #(#field_names,)* } = self;
                #(#injected)*
                #fn_name(#(#call_args),*).await.map_err(::core::convert::Into::into)
            }
        }

        ::palermo::__private::inventory::submit! {
            ::palermo::__private::Registration::of::<#struct_name>(::core::concat!(::core::file!(), ":", ::core::line!()))
        }

        #periodic
    }
}

enum Injected {
    State,
    Context,
}

fn injected_kind(ty: &Type) -> Option<Injected> {
    let Type::Path(path) = ty else { return None };
    match path.path.segments.last()?.ident.to_string().as_str() {
        "State" => Some(Injected::State),
        "JobContext" => Some(Injected::Context),
        _ => None,
    }
}

fn parse_options(attr: proc_macro2::TokenStream) -> syn::Result<Options> {
    let mut options = Options {
        queue: "default".into(),
        name: None,
        max_attempts: None,
        timeout_ms: None,
        serializer: None,
        backoff_ms: None,
        unique_ms: None,
        priority: None,
        periodic: periodic::Periodic::default(),
        limit: limit::Limit::default(),
    };
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(attr)?;
    for meta in metas {
        let Meta::NameValue(nv) = &meta else {
            return Err(syn::Error::new(meta.span(), "expected `option = value`"));
        };
        let key = nv
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        match key.as_str() {
            "queue" => {
                let (queue, span) = string(&nv.value)?;
                validate_queue(&queue).map_err(|e| syn::Error::new(span, e))?;
                options.queue = queue;
            }
            "name" => {
                let (name, span) = string(&nv.value)?;
                if name.is_empty() || name.len() > 200 {
                    return Err(syn::Error::new(span, "a job name must be 1 to 200 bytes long"));
                }
                options.name = Some(name);
            }
            "max_attempts" => {
                let Expr::Lit(ExprLit { lit: Lit::Int(n), .. }) = &nv.value else {
                    return Err(syn::Error::new(nv.value.span(), "max_attempts takes a whole number, e.g. 5"));
                };
                let n: u32 = n.base10_parse()?;
                if n == 0 {
                    return Err(syn::Error::new(nv.value.span(), "max_attempts must be at least 1 (1 means no retry)"));
                }
                options.max_attempts = Some(n);
            }
            "timeout" => {
                let (text, span) = string(&nv.value)?;
                options.timeout_ms = Some(parse_duration_ms(&text).map_err(|e| syn::Error::new(span, format!("timeout {e}")))?);
            }
            "backoff" => {
                let (text, span) = string(&nv.value)?;
                options.backoff_ms = Some(parse_backoff(&text).map_err(|e| syn::Error::new(span, e))?);
            }
            "unique" => options.unique_ms = Some(parse_unique(&nv.value)?),
            "priority" => options.priority = Some(parse_priority(&nv.value)?),
            "cron" | "every" | "tz" | "catch_up" => periodic::parse(&mut options.periodic, &key, &nv.value)?,
            "concurrency" | "rate" | "key" | "key_fn" | "limit" => options.limit.parse(&key, &nv.value)?,
            "serializer" => {
                let (text, span) = string(&nv.value)?;
                options.serializer = Some(match text.as_str() {
                    "json" => quote!(Json),
                    "msgpack" => quote!(MessagePack),
                    _ => return Err(syn::Error::new(span, "serializer must be \"json\" or \"msgpack\"")),
                });
            }
            _ => {
                return Err(syn::Error::new(
                    nv.path.span(),
                    format!("unknown #[job] option `{key}`; the options are queue, name, max_attempts, timeout, backoff, serializer, unique, priority, cron, every, tz, catch_up, concurrency, rate, key, key_fn, limit"),
                ))
            }
        }
    }
    if options.periodic.when.is_none()
        && (options.periodic.tz.is_some() || options.periodic.catch_up.is_some())
    {
        return Err(syn::Error::new(
            Span::call_site(),
            "tz and catch_up need cron = \"..\" or every = \"..\"",
        ));
    }
    Ok(options)
}

/// `unique = "30m"`: the lock TTL in ms, at least a second (palermo::unique::MIN_TTL).
fn parse_unique(value: &Expr) -> syn::Result<u64> {
    let (text, span) = string(value)?;
    let ms = parse_duration_ms(&text).map_err(|e| syn::Error::new(span, format!("unique {e}")))?;
    if !(1000..=u64::from(u32::MAX)).contains(&ms) {
        return Err(syn::Error::new(
            span,
            "unique takes a TTL between \"1s\" and about 49 days, e.g. \"30m\"",
        ));
    }
    Ok(ms)
}

/// `priority = 5`: 0 to 255 (RabbitMQ's range; a queue's `x-max-priority` caps it).
fn parse_priority(value: &Expr) -> syn::Result<u8> {
    let Expr::Lit(ExprLit {
        lit: Lit::Int(n), ..
    }) = value
    else {
        return Err(syn::Error::new(
            value.span(),
            "priority takes a whole number from 0 to 255, e.g. 5",
        ));
    };
    n.base10_parse::<u8>().map_err(|_| {
        syn::Error::new(
            n.span(),
            "priority takes a whole number from 0 to 255, e.g. 5",
        )
    })
}

/// The `UNIQUE` and `PRIORITY` constants of the `Job` impl.
fn unique_and_priority_constants(options: &Options) -> proc_macro2::TokenStream {
    let unique = match options.unique_ms {
        Some(ms) => quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#ms))),
        None => quote!(::core::option::Option::None),
    };
    let priority = match options.priority {
        Some(p) => quote!(::core::option::Option::Some(#p)),
        None => quote!(::core::option::Option::None),
    };
    quote! {
        const UNIQUE: ::core::option::Option<::core::time::Duration> = #unique;
        const PRIORITY: ::core::option::Option<u8> = #priority;
    }
}

fn string(expr: &Expr) -> syn::Result<(String, Span)> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok((s.value(), s.span())),
        other => Err(syn::Error::new(other.span(), "expected a string literal")),
    }
}

/// The same rules as `palermo::topology::validate_queue_name`, checked at compile time.
fn validate_queue(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 200 {
        return Err("a queue name must be 1 to 200 bytes long".into());
    }
    if name.starts_with("amq.") {
        return Err("queue names starting with \"amq.\" are reserved by RabbitMQ".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':')))
    {
        return Err(format!(
            "queue name {name:?} contains {bad:?}; use letters, digits and . _ - :"
        ));
    }
    Ok(())
}

/// `"5s"` (base) or `"5s..10m"` (base..cap), within the delay queues' ~388 days.
fn parse_backoff(text: &str) -> Result<(u64, Option<u64>), String> {
    const MAX_MS: u64 = ((1 << 25) - 1) * 1000; // palermo::delay::MAX_DELAY
    let (base, max) = match text.split_once("..") {
        Some((base, max)) => (base.trim(), Some(max.trim())),
        None => (text.trim(), None),
    };
    let base = parse_duration_ms(base).map_err(|e| format!("backoff {e}"))?;
    let max = max
        .map(|max| parse_duration_ms(max).map_err(|e| format!("backoff cap {e}")))
        .transpose()?;
    if max.is_some_and(|max| max < base) {
        return Err(format!(
            "backoff {text:?}: the cap is shorter than the first delay"
        ));
    }
    if base.max(max.unwrap_or(0)) > MAX_MS {
        return Err(format!("backoff {text:?}: delays are limited to 388 days"));
    }
    Ok((base, max))
}

/// A duration in the grammar of the whole project (humantime, as the admin side's
/// `palermo_store::time`): `500ms`, `90s`, `10m`, `1h30m`, `2d`, `1w`.
fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let duration = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("{text:?} is not a duration like \"500ms\", \"30s\", \"10m\", \"1h30m\" or \"2d\" ({e})")
    })?;
    match u64::try_from(duration.as_millis()) {
        Ok(0) | Err(_) => Err(format!(
            "{text:?} must be more than zero and not absurdly large"
        )),
        Ok(ms) => Ok(ms),
    }
}

fn pascal_case(snake: &str) -> String {
    snake
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_backoff;

    #[test]
    fn backoff_option() {
        assert_eq!(parse_backoff("5s"), Ok((5_000, None)));
        assert_eq!(parse_backoff("500ms..10m"), Ok((500, Some(600_000))));
        assert!(parse_backoff("10m..5s").unwrap_err().contains("shorter"));
        assert_eq!(
            parse_backoff("1h30m..2d"),
            Ok((5_400_000, Some(172_800_000)))
        );
        assert!(parse_backoff("5x").unwrap_err().contains("1h30m"));
        assert!(parse_backoff("5").unwrap_err().contains("1h30m"));
        assert!(parse_backoff("1s..400d").is_err());
        assert!(parse_backoff("1s..10000h")
            .unwrap_err()
            .contains("388 days"));
    }
}
