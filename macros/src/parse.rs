//! Parsing `#[function(trigger = ...)]` (`http`, `cron`, `queue`, `topic`, `object`, `stream`, `invoke`) into [`FunctionArgs`], with
//! every value checked: a bad route, cron expression, time zone or queue name is a compile error at the literal.

use edgefn_manifest::record::{
    CatchUp, CronPolicy, Delivery, Overlap, RESERVED_QUEUE_PREFIX, RouteAuth, StreamDelivery, StreamStart,
    WebSocketEventKind, validate_object_trigger, validate_queue_name,
};
use edgefn_manifest::route::RoutePattern;
use edgefn_manifest::router::{KNOWN_METHODS, MethodFilter};
use edgefn_manifest::schedule::Schedule;
use proc_macro2::{Span, TokenStream};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, Lit, LitStr, Token, parenthesized};

/// The trigger kinds the macro accepts. A closed set: adding one means teaching the host about it too.
const TRIGGER_KINDS: &[&str] =
    &["http", "cron", "queue", "topic", "object", "stream", "invoke", "websocket", "workflow"];

/// Everything the attribute said, validated.
pub(crate) struct FunctionArgs {
    pub(crate) trigger: TriggerArgs,
}

/// A validated trigger.
pub(crate) enum TriggerArgs {
    Http(HttpTrigger),
    Cron { expression: String, timezone: String, policy: CronPolicy },
    Queue { queue: String, span: Span, delivery: Delivery },
    Topic { topic: String, delivery: Delivery },
    Object { bucket: String, events: Vec<String>, prefix: String, delivery: Delivery },
    Stream { stream: String, delivery: StreamDelivery },
    Invoke,
    WebSocket { route: String, on: WebSocketEventKind, auth: Option<RouteAuth> },
    Workflow,
}

pub(crate) struct HttpTrigger {
    pub(crate) route: RoutePattern,
    /// The route literal, for pointing errors (duplicate routes) at it.
    pub(crate) route_span: Span,
    pub(crate) method: MethodFilter,
    /// `auth = "NAME", scopes = [...]`: the host's authorizer that guards the route.
    pub(crate) auth: Option<RouteAuth>,
}

impl HttpTrigger {
    pub(crate) fn method_str(&self) -> &str {
        match &self.method {
            MethodFilter::Any => "*",
            MethodFilter::Only(m) => m,
        }
    }
}

/// `key = value` where the value is a string or integer literal, or a list of string literals (`["a", "b"]`).
struct KeyValue {
    key: Ident,
    value: Value,
}

enum Value {
    Literal(Lit),
    List { strings: Vec<LitStr>, span: Span },
}

impl Value {
    fn span(&self) -> Span {
        match self {
            Value::Literal(literal) => literal.span(),
            Value::List { span, .. } => *span,
        }
    }
}

impl Parse for KeyValue {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key: Ident = input.parse()?;
        input.parse::<Token![=]>()?;
        if input.peek(syn::token::Bracket) {
            let content;
            let bracket = syn::bracketed!(content in input);
            let strings = Punctuated::<LitStr, Token![,]>::parse_terminated(&content).map_err(|e| {
                syn::Error::new(
                    e.span(),
                    format!("`{key}` takes a list of string literals, e.g. `{key} = [\"a\", \"b\"]`"),
                )
            })?;
            let span = bracket.span.join();
            return Ok(Self { key, value: Value::List { strings: strings.into_iter().collect(), span } });
        }
        let value = input.parse().map_err(|e| {
            syn::Error::new(e.span(), format!("`{key}` takes a literal, e.g. `{key} = \"...\"` or `{key} = 10`"))
        })?;
        Ok(Self { key, value: Value::Literal(value) })
    }
}

impl KeyValue {
    fn string(&self) -> syn::Result<LitStr> {
        match &self.value {
            Value::Literal(Lit::Str(value)) => Ok(value.clone()),
            other => Err(syn::Error::new(
                other.span(),
                format!("`{}` takes a string literal, e.g. `{} = \"...\"`", self.key, self.key),
            )),
        }
    }

    fn strings(&self) -> syn::Result<Vec<LitStr>> {
        match &self.value {
            Value::List { strings, .. } => Ok(strings.clone()),
            other => Err(syn::Error::new(
                other.span(),
                format!("`{}` takes a list of string literals, e.g. `{} = [\"a\", \"b\"]`", self.key, self.key),
            )),
        }
    }

    fn integer<N: std::str::FromStr>(&self) -> syn::Result<N>
    where
        N::Err: std::fmt::Display,
    {
        match &self.value {
            Value::Literal(Lit::Int(value)) => value.base10_parse(),
            other => Err(syn::Error::new(
                other.span(),
                format!("`{}` takes a whole number, e.g. `{} = 10`", self.key, self.key),
            )),
        }
    }
}

/// The arguments of `kind(...)`: a string literal first (route, expression, queue or topic), then optional
/// `key = value` pairs.
struct TriggerCall {
    first: LitStr,
    options: Punctuated<KeyValue, Token![,]>,
}

impl TriggerCall {
    fn parse(input: ParseStream<'_>, example: &str) -> syn::Result<Self> {
        let first: LitStr = input.parse().map_err(|e| syn::Error::new(e.span(), example))?;
        let mut options: Punctuated<KeyValue, Token![,]> = Punctuated::new();
        if input.parse::<Option<Token![,]>>()?.is_some() {
            options = Punctuated::parse_terminated(input)?;
        }
        let mut seen = std::collections::BTreeSet::new();
        for option in &options {
            if !seen.insert(option.key.to_string()) {
                return Err(syn::Error::new(option.key.span(), format!("duplicate key `{}`", option.key)));
            }
        }
        Ok(Self { first, options })
    }
}

impl Parse for FunctionArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.is_empty() {
            return Err(syn::Error::new(
                Span::call_site(),
                "missing trigger: write `#[function(trigger = http(\"/path\"))]` (or `cron(...)`, `queue(...)`, `topic(...)`, `object(...)`, `stream(...)`, `invoke`)",
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
    let kind_str = kind.to_string();
    if !TRIGGER_KINDS.contains(&kind_str.as_str()) {
        return Err(syn::Error::new(
            kind.span(),
            format!("unknown trigger `{kind}`; expected one of {}", quoted_list(TRIGGER_KINDS)),
        ));
    }
    if kind_str == "invoke" || kind_str == "workflow" {
        // `invoke` or `invoke()`, `workflow` or `workflow()`: they take no arguments.
        if input.peek(syn::token::Paren) {
            let content;
            parenthesized!(content in input);
            if !content.is_empty() {
                return Err(content.error(format!("`{kind_str}` takes no arguments: `trigger = {kind_str}`")));
            }
        }
        return Ok(if kind_str == "invoke" { TriggerArgs::Invoke } else { TriggerArgs::Workflow });
    }
    let content;
    parenthesized!(content in input);
    match kind_str.as_str() {
        "http" => parse_http(&content),
        "cron" => parse_cron(&content),
        "stream" => parse_stream(&content),
        "websocket" => parse_websocket(&content),
        _ => parse_messages(&content, &kind_str),
    }
}

fn parse_http(input: ParseStream<'_>) -> syn::Result<TriggerArgs> {
    let args =
        TriggerCall::parse(input, "`http` takes the route first, as a string literal: `http(\"/hello/{name}\")`")?;
    let route = RoutePattern::parse(&args.first.value()).map_err(|e| syn::Error::new(args.first.span(), e))?;
    let mut method = None;
    let mut guard = Guard::default();
    for option in &args.options {
        match option.key.to_string().as_str() {
            "method" => {
                let value = option.string()?;
                method = Some(MethodFilter::parse(&value.value()).map_err(|e| syn::Error::new(value.span(), e))?);
            }
            "auth" | "scopes" => guard.take(option)?,
            other => {
                return Err(syn::Error::new(
                    option.key.span(),
                    format!(
                        "unknown key `{other}` for an http trigger; expected `method` (one of {}, or \"*\"), `auth` or \
                         `scopes`",
                        quoted_list(&KNOWN_METHODS)
                    ),
                ));
            }
        }
    }
    Ok(TriggerArgs::Http(HttpTrigger {
        route,
        route_span: args.first.span(),
        method: method.unwrap_or_else(|| MethodFilter::Only("GET".into())),
        auth: guard.finish()?,
    }))
}

/// `auth = "NAME", scopes = [...]` of a route, as an `http` or `websocket` trigger takes them.
#[derive(Default)]
struct Guard {
    authorizer: Option<String>,
    scopes: Option<(Vec<String>, Span)>,
}

impl Guard {
    fn take(&mut self, option: &KeyValue) -> syn::Result<()> {
        if option.key == "auth" {
            let value = option.string()?;
            validate_authorizer_name(&value.value()).map_err(|e| syn::Error::new(value.span(), e))?;
            self.authorizer = Some(value.value());
        } else {
            let mut list = Vec::new();
            for scope in option.strings()? {
                validate_scope(&scope.value()).map_err(|e| syn::Error::new(scope.span(), e))?;
                list.push(scope.value());
            }
            self.scopes = Some((list, option.value.span()));
        }
        Ok(())
    }

    fn finish(self) -> syn::Result<Option<RouteAuth>> {
        match (self.authorizer, self.scopes) {
            (Some(authorizer), scopes) => {
                Ok(Some(RouteAuth { authorizer, scopes: scopes.map(|(list, _)| list).unwrap_or_default() }))
            }
            (None, Some((_, span))) => Err(syn::Error::new(
                span,
                "`scopes` needs `auth = \"AUTHORIZER\"`: scopes are checked by the authorizer that verifies the token",
            )),
            (None, None) => Ok(None),
        }
    }
}

fn parse_websocket(input: ParseStream<'_>) -> syn::Result<TriggerArgs> {
    let args = TriggerCall::parse(
        input,
        "`websocket` takes the route first, as a string literal: `websocket(\"/chat\", on = \"message\")`",
    )?;
    RoutePattern::parse(&args.first.value()).map_err(|e| syn::Error::new(args.first.span(), e))?;
    let mut on = None;
    let mut guard = Guard::default();
    for option in &args.options {
        match option.key.to_string().as_str() {
            "on" => {
                let value = option.string()?;
                on = Some(WebSocketEventKind::parse(&value.value()).ok_or_else(|| {
                    syn::Error::new(
                        value.span(),
                        format!(
                            "unknown event `{}`; expected one of {}",
                            value.value(),
                            quoted_list(WebSocketEventKind::NAMES)
                        ),
                    )
                })?);
            }
            "auth" | "scopes" => guard.take(option)?,
            other => {
                return Err(syn::Error::new(
                    option.key.span(),
                    format!("unknown key `{other}` for a websocket trigger; expected `on`, `auth` or `scopes`"),
                ));
            }
        }
    }
    let on = on.ok_or_else(|| {
        syn::Error::new(
            args.first.span(),
            format!("a websocket trigger names its event: `on = ` one of {}", quoted_list(WebSocketEventKind::NAMES)),
        )
    })?;
    Ok(TriggerArgs::WebSocket { route: args.first.value(), on, auth: guard.finish()? })
}

/// An authorizer name as the host's config spells `[authorizers.NAME]`.
fn validate_authorizer_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err(format!("authorizer `{name}` must be 1-64 ASCII letters, digits, `-` or `_`")) }
}

/// A scope as OAuth 2 spells one: printable ASCII without spaces, quotes or backslashes (RFC 6749 3.3).
fn validate_scope(scope: &str) -> Result<(), String> {
    let ok = !scope.is_empty()
        && scope.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
    if ok { Ok(()) } else { Err(format!("scope `{scope}` must be printable ASCII without spaces, `\"` or `\\`")) }
}

const CRON_KEYS: &[&str] = &["tz", "catch_up", "catch_up_limit", "overlap", "retries", "backoff_ms"];

fn parse_cron(input: ParseStream<'_>) -> syn::Result<TriggerArgs> {
    let args =
        TriggerCall::parse(input, "`cron` takes the expression first, as a string literal: `cron(\"0 */5 * * * *\")`")?;
    let mut timezone = ("UTC".to_owned(), args.first.span());
    let mut policy = CronPolicy::default();
    for option in &args.options {
        match option.key.to_string().as_str() {
            "tz" => {
                let value = option.string()?;
                timezone = (value.value(), value.span());
            }
            "catch_up" => {
                let value = option.string()?;
                policy.catch_up = CatchUp::parse(&value.value()).ok_or_else(|| {
                    syn::Error::new(value.span(), format!("`catch_up` is one of {}", quoted_list(CatchUp::NAMES)))
                })?;
            }
            "overlap" => {
                let value = option.string()?;
                policy.overlap = Overlap::parse(&value.value()).ok_or_else(|| {
                    syn::Error::new(value.span(), format!("`overlap` is one of {}", quoted_list(Overlap::NAMES)))
                })?;
            }
            "catch_up_limit" => policy.catch_up_limit = option.integer()?,
            "retries" => policy.retries = option.integer()?,
            "backoff_ms" => policy.backoff_ms = option.integer()?,
            other => {
                return Err(syn::Error::new(
                    option.key.span(),
                    format!("unknown key `{other}` for a cron trigger; expected one of {}", quoted_list(CRON_KEYS)),
                ));
            }
        }
    }
    if let Err(error) = policy.validate() {
        let key = error.split_whitespace().next().unwrap_or_default();
        let span = args.options.iter().find(|o| o.key == key).map_or(args.first.span(), |o| o.key.span());
        return Err(syn::Error::new(span, error));
    }
    let expression = args.first.value();
    if let Err(error) = Schedule::parse(&expression, &timezone.0) {
        let span = if error.starts_with("unknown time zone") { timezone.1 } else { args.first.span() };
        return Err(syn::Error::new(span, error));
    }
    Ok(TriggerArgs::Cron { expression, timezone: timezone.0, policy })
}

const DELIVERY_KEYS: &[&str] =
    &["batch_size", "max_wait_ms", "max_retries", "dead_letter", "concurrency", "backoff_ms"];

/// What an object trigger takes besides the delivery settings.
const OBJECT_KEYS: &[&str] = &["events", "prefix"];

/// `queue("orders", ...)`, `topic("news", ...)` and `object("photos", events = [...], prefix = "...", ...)`.
fn parse_messages(input: ParseStream<'_>, kind: &str) -> syn::Result<TriggerArgs> {
    let what = if kind == "object" { "bucket" } else { kind };
    let example = format!("`{kind}` takes the {what} name first, as a string literal: `{kind}(\"orders\")`");
    let args = TriggerCall::parse(input, &example)?;
    let name = args.first.value();
    if kind != "object" {
        validate_queue_name(kind, &name).map_err(|e| syn::Error::new(args.first.span(), e))?;
        if name.starts_with(RESERVED_QUEUE_PREFIX) {
            let error = format!("{kind} names starting with `{RESERVED_QUEUE_PREFIX}` are the host's own");
            return Err(syn::Error::new(args.first.span(), error));
        }
    }
    let mut delivery = Delivery::default();
    let (mut events, mut prefix) = (Vec::new(), String::new());
    for option in &args.options {
        match option.key.to_string().as_str() {
            "batch_size" => delivery.batch_size = option.integer()?,
            "max_wait_ms" => delivery.max_wait_ms = option.integer()?,
            "max_retries" => delivery.max_retries = option.integer()?,
            "concurrency" => delivery.concurrency = option.integer()?,
            "backoff_ms" => delivery.backoff_ms = option.integer()?,
            "dead_letter" => delivery.dead_letter = Some(option.string()?.value()),
            "events" if kind == "object" => events = option.strings()?.iter().map(LitStr::value).collect(),
            "prefix" if kind == "object" => prefix = option.string()?.value(),
            other => {
                let mut keys = DELIVERY_KEYS.to_vec();
                if kind == "object" {
                    keys.extend(OBJECT_KEYS);
                }
                return Err(syn::Error::new(
                    option.key.span(),
                    format!(
                        "unknown key `{other}` for {} {kind} trigger; expected one of {}",
                        article(kind),
                        quoted_list(&keys)
                    ),
                ));
            }
        }
    }
    if kind == "object" {
        validate_object_trigger(&name, &events, &prefix).map_err(|error| {
            let key = if error.contains("event") { "events" } else { "prefix" };
            let span = args.options.iter().find(|o| o.key == key).map_or(args.first.span(), |o| o.key.span());
            syn::Error::new(if error.contains("bucket name") { args.first.span() } else { span }, error)
        })?;
    }
    let consumed = if kind == "object" { edgefn_manifest::record::object_queue(&name, "c", "f") } else { name.clone() };
    delivery.validate(&consumed).map_err(|error| {
        let key = error.split_whitespace().next().unwrap_or_default();
        let span = args.options.iter().find(|o| o.key == key).map_or(args.first.span(), |o| o.key.span());
        syn::Error::new(span, error)
    })?;
    Ok(match kind {
        "queue" => TriggerArgs::Queue { queue: name, span: args.first.span(), delivery },
        "object" => TriggerArgs::Object { bucket: name, events, prefix, delivery },
        _ => TriggerArgs::Topic { topic: name, delivery },
    })
}

const STREAM_KEYS: &[&str] =
    &["batch_size", "max_wait_ms", "start", "max_retries", "max_record_age_ms", "bisect", "on_failure", "backoff_ms"];

/// `stream("clicks", batch_size = 100, max_wait_ms = 500, start = "latest", ...)`.
fn parse_stream(input: ParseStream<'_>) -> syn::Result<TriggerArgs> {
    let args =
        TriggerCall::parse(input, "`stream` takes the stream name first, as a string literal: `stream(\"clicks\")`")?;
    let name = args.first.value();
    validate_queue_name("stream", &name).map_err(|e| syn::Error::new(args.first.span(), e))?;
    let mut delivery = StreamDelivery::default();
    for option in &args.options {
        match option.key.to_string().as_str() {
            "batch_size" => delivery.batch_size = option.integer()?,
            "max_wait_ms" => delivery.max_wait_ms = option.integer()?,
            "max_retries" => delivery.max_retries = option.integer()?,
            "max_record_age_ms" => delivery.max_record_age_ms = option.integer()?,
            "backoff_ms" => delivery.backoff_ms = option.integer()?,
            "on_failure" => delivery.on_failure = Some(option.string()?.value()),
            "start" => {
                let value = option.string()?;
                delivery.start = StreamStart::parse(&value.value()).ok_or_else(|| {
                    syn::Error::new(value.span(), format!("`start` is one of {}", quoted_list(StreamStart::NAMES)))
                })?;
            }
            "bisect" => match &option.value {
                Value::Literal(Lit::Bool(value)) => delivery.bisect = value.value,
                other => return Err(syn::Error::new(other.span(), "`bisect` takes `true` or `false`")),
            },
            other => {
                return Err(syn::Error::new(
                    option.key.span(),
                    format!("unknown key `{other}` for a stream trigger; expected one of {}", quoted_list(STREAM_KEYS)),
                ));
            }
        }
    }
    delivery.validate(&name).map_err(|error| {
        let key = error.split_whitespace().next().unwrap_or_default();
        let key = if key == "on_failure" || error.contains("on_failure") { "on_failure" } else { key };
        let span = args.options.iter().find(|o| o.key == key).map_or(args.first.span(), |o| o.key.span());
        syn::Error::new(span, error)
    })?;
    Ok(TriggerArgs::Stream { stream: name, delivery })
}

fn article(kind: &str) -> &'static str {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
}

fn quoted_list(items: &[&str]) -> String {
    items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}

/// Parses the attribute tokens.
pub(crate) fn parse_args(attr: TokenStream) -> syn::Result<FunctionArgs> {
    syn::parse2(attr)
}
