//! Parsing `#[function(trigger = http("/route", method = "POST"))]` into [`FunctionArgs`].

use edgefn_manifest::route::RoutePattern;
use edgefn_manifest::router::{KNOWN_METHODS, MethodFilter};
use proc_macro2::{Span, TokenStream};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, LitStr, Token, parenthesized};

/// The trigger kinds the macro accepts. A closed set: adding one means teaching the host about it too.
const TRIGGER_KINDS: &[&str] = &["http"];

/// Everything the attribute said, validated.
pub(crate) struct FunctionArgs {
    pub(crate) trigger: TriggerArgs,
}

/// A validated trigger.
pub(crate) enum TriggerArgs {
    Http(HttpTrigger),
}

pub(crate) struct HttpTrigger {
    pub(crate) route: RoutePattern,
    /// The route literal, for pointing errors (duplicate routes) at it.
    pub(crate) route_span: Span,
    pub(crate) method: MethodFilter,
}

impl HttpTrigger {
    pub(crate) fn method_str(&self) -> &str {
        match &self.method {
            MethodFilter::Any => "*",
            MethodFilter::Only(m) => m,
        }
    }
}

/// `key = value` where the value is a string literal.
struct KeyValue {
    key: Ident,
    value: LitStr,
}

impl Parse for KeyValue {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key: Ident = input.parse()?;
        input.parse::<Token![=]>()?;
        let value = input.parse().map_err(|e| {
            syn::Error::new(e.span(), format!("`{key}` takes a string literal, e.g. `{key} = \"...\"`"))
        })?;
        Ok(Self { key, value })
    }
}

/// The arguments of `http(...)`: a route literal, then optional `key = "value"` pairs.
struct HttpArgs {
    route: LitStr,
    options: Punctuated<KeyValue, Token![,]>,
}

impl Parse for HttpArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let route: LitStr = input.parse().map_err(|e| {
            syn::Error::new(e.span(), "`http` takes the route first, as a string literal: `http(\"/hello/{name}\")`")
        })?;
        let mut options = Punctuated::new();
        if input.parse::<Option<Token![,]>>()?.is_some() {
            options = Punctuated::parse_terminated(input)?;
        }
        Ok(Self { route, options })
    }
}

impl Parse for FunctionArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.is_empty() {
            return Err(syn::Error::new(
                Span::call_site(),
                "missing trigger: write `#[function(trigger = http(\"/path\"))]`",
            ));
        }
        let mut trigger = None;
        loop {
            if input.is_empty() {
                break;
            }
            let key: Ident = input.parse()?;
            match key.to_string().as_str() {
                "trigger" => {
                    if trigger.is_some() {
                        return Err(syn::Error::new(key.span(), "duplicate key `trigger`: a function has one trigger"));
                    }
                    input.parse::<Token![=]>()?;
                    trigger = Some(parse_trigger(input)?);
                }
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("unknown key `{other}`; expected `trigger`, e.g. `trigger = http(\"/path\")`"),
                    ));
                }
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        let trigger = trigger.ok_or_else(|| syn::Error::new(Span::call_site(), "missing `trigger = ...`"))?;
        Ok(Self { trigger })
    }
}

fn parse_trigger(input: ParseStream<'_>) -> syn::Result<TriggerArgs> {
    let kind: Ident = input.parse()?;
    if !TRIGGER_KINDS.contains(&kind.to_string().as_str()) {
        return Err(syn::Error::new(
            kind.span(),
            format!("unknown trigger `{kind}`; expected one of {}", quoted_list(TRIGGER_KINDS)),
        ));
    }
    let content;
    parenthesized!(content in input);
    let args: HttpArgs = content.parse()?;
    let route = RoutePattern::parse(&args.route.value()).map_err(|e| syn::Error::new(args.route.span(), e))?;
    let mut method: Option<(MethodFilter, &Ident)> = None;
    for option in &args.options {
        match option.key.to_string().as_str() {
            "method" => {
                if method.is_some() {
                    return Err(syn::Error::new(option.key.span(), "duplicate key `method`"));
                }
                let parsed =
                    MethodFilter::parse(&option.value.value()).map_err(|e| syn::Error::new(option.value.span(), e))?;
                method = Some((parsed, &option.key));
            }
            other => {
                return Err(syn::Error::new(
                    option.key.span(),
                    format!(
                        "unknown key `{other}` for an http trigger; expected `method` (one of {}, or \"*\")",
                        quoted_list(&KNOWN_METHODS)
                    ),
                ));
            }
        }
    }
    Ok(TriggerArgs::Http(HttpTrigger {
        route,
        route_span: args.route.span(),
        method: method.map(|(m, _)| m).unwrap_or_else(|| MethodFilter::Only("GET".into())),
    }))
}

fn quoted_list(items: &[&str]) -> String {
    items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}

/// Parses the attribute tokens.
pub(crate) fn parse_args(attr: TokenStream) -> syn::Result<FunctionArgs> {
    syn::parse2(attr)
}
