//! Writing the code that goes next to the user's function.

use crate::parse::{self, HttpTrigger, TriggerArgs};
use crate::validate;
use edgefn_manifest::record::{FunctionRecord, Trigger, encode_record};
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, ItemFn};

/// Entry point of `#[function]`.
pub(crate) fn function(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_item(item, "#[function] goes on a free function: `fn name(req: Request) -> Response`", |func| {
        expand(attr, func)
    })
}

/// Entry point of `#[init]`.
pub(crate) fn init(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_item(item, "#[init] goes on a free function: `fn init()`", |func| expand_init(attr, func))
}

/// Parses the annotated function and emits it unchanged, followed by what `expand` generates, or by the error.
/// On error the user's function is still emitted, so the rest of the crate, and the IDE, keep seeing it.
fn expand_item(
    item: TokenStream,
    not_a_function: &str,
    expand: impl FnOnce(&ItemFn) -> syn::Result<TokenStream>,
) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let error = syn::Error::new(item.span(), not_a_function).to_compile_error();
            return quote! { #error #item };
        }
    };
    match expand(&func) {
        Ok(tokens) => quote! { #func #tokens },
        Err(error) => {
            let error = error.to_compile_error();
            quote! { #func #error }
        }
    }
}

fn expand(attr: TokenStream, func: &ItemFn) -> syn::Result<TokenStream> {
    let args = parse::parse_args(attr)?;
    match &args.trigger {
        TriggerArgs::Http(http) => expand_http(func, http),
        TriggerArgs::Cron { expression, timezone, policy } => {
            let trigger =
                Trigger::Cron { expression: expression.clone(), timezone: timezone.clone(), policy: policy.clone() };
            expand_cron(func, trigger)
        }
        TriggerArgs::Queue { queue, span, delivery } => {
            let marker = unique_marker("__edgefn_one_consumer_per_queue__", queue, *span);
            let trigger = Trigger::Queue { queue: queue.clone(), delivery: delivery.clone() };
            let expanded = expand_messages(func, "queue", trigger)?;
            Ok(quote! { #marker #expanded })
        }
        TriggerArgs::Topic { topic, delivery } => {
            expand_messages(func, "topic", Trigger::Topic { topic: topic.clone(), delivery: delivery.clone() })
        }
        TriggerArgs::Object { bucket, events, prefix, delivery } => {
            let trigger = Trigger::Object {
                bucket: bucket.clone(),
                events: events.clone(),
                prefix: prefix.clone(),
                delivery: delivery.clone(),
            };
            expand_messages(func, "object", trigger)
        }
        TriggerArgs::Stream { stream, delivery } => {
            expand_messages(func, "stream", Trigger::Stream { stream: stream.clone(), delivery: delivery.clone() })
        }
        TriggerArgs::Invoke => expand_invoke(func, "invoke", Trigger::Invoke),
        TriggerArgs::WebSocket { route, on, auth } => {
            let trigger = Trigger::WebSocket { route: route.clone(), on: *on, auth: auth.clone() };
            expand_invoke(func, "websocket", trigger)
        }
        TriggerArgs::Workflow => expand_workflow(func),
    }
}

/// A `workflow` function: the host calls it like an `invoke` one, with the run's journal as the payload, and gets
/// back what the resume came to (`edgefn_manifest::workflow`).
fn expand_workflow(func: &ItemFn) -> syn::Result<TokenStream> {
    let input_ty = validate::workflow_function(func)?;
    let name = &func.sig.ident;
    let name_str = name.to_string();
    let record = FunctionRecord { name: name_str.clone(), trigger: Trigger::Workflow };
    let manifest = manifest_static(name, &encode_record(&record));
    let call = quote_spanned! {input_ty.span()=> #name(__workflow.clone(), __input) };
    let finish =
        quote_spanned! {output_span(func)=> ::edgefn::__private::workflow_finish(&__workflow, #call.await).await };
    Ok(quote! {
        const _: () = {
            fn __edgefn_call(payload: ::std::vec::Vec<u8>) -> ::edgefn::__private::Pending<::std::vec::Vec<u8>> {
                ::edgefn::__private::boxed(async move {
                    let (__workflow, __input) = match ::edgefn::__private::workflow_begin(&payload) {
                        ::core::result::Result::Ok(begun) => begun,
                        ::core::result::Result::Err(refused) => return refused,
                    };
                    #finish
                })
            }
            const __EDGEFN_HANDLER: ::edgefn::__private::InvokeHandler =
                ::edgefn::__private::Handler::Async(__edgefn_call);
            ::edgefn::__private::inventory::submit! {
                ::edgefn::__private::InvokeFunction { name: #name_str, handler: __EDGEFN_HANDLER }
            }
        };
        #manifest
    })
}

const CRON_SIGNATURE: &str = "fn name(event: CronEvent) -> Result<()>";

fn expand_cron(func: &ItemFn, trigger: Trigger) -> syn::Result<TokenStream> {
    let event_ty = validate::handler(func, "cron", "the event", CRON_SIGNATURE)?;
    let name = &func.sig.ident;
    let name_str = name.to_string();
    let call = quote_spanned! {event_ty.span()=> #name(event) };
    let manifest = manifest_static(name, &encode_record(&FunctionRecord { name: name_str.clone(), trigger }));
    let caller = if func.sig.asyncness.is_some() {
        let into_result = quote_spanned! {output_span(func)=>
            ::edgefn::__private::IntoHandlerResult::into_handler_result(#call.await)
        };
        quote! {
            fn __edgefn_call(event: ::edgefn::CronEvent) -> ::edgefn::__private::Pending<()> {
                ::edgefn::__private::boxed(async move { #into_result })
            }
            const __EDGEFN_HANDLER: ::edgefn::__private::CronHandler = ::edgefn::__private::Handler::Async(__edgefn_call);
        }
    } else {
        let into_result =
            quote_spanned! {output_span(func)=> ::edgefn::__private::IntoHandlerResult::into_handler_result(#call) };
        quote! {
            fn __edgefn_call(event: ::edgefn::CronEvent) -> ::core::result::Result<(), ::edgefn::Error> {
                #into_result
            }
            const __EDGEFN_HANDLER: ::edgefn::__private::CronHandler = ::edgefn::__private::Handler::Sync(__edgefn_call);
        }
    };
    Ok(quote! {
        const _: () = {
            #caller
            ::edgefn::__private::inventory::submit! {
                ::edgefn::__private::CronFunction { name: #name_str, handler: __EDGEFN_HANDLER }
            }
        };
        #manifest
    })
}

fn expand_messages(func: &ItemFn, kind: &str, trigger: Trigger) -> syn::Result<TokenStream> {
    let signature = "fn name(batch: Batch<T>) -> Result<()>";
    let batch_ty = validate::handler(func, kind, "the batch", signature)?;
    let name = &func.sig.ident;
    let name_str = name.to_string();
    let call = quote_spanned! {batch_ty.span()=> #name(::edgefn::__private::Batch::decode(source, messages)) };
    let manifest = manifest_static(name, &encode_record(&FunctionRecord { name: name_str.clone(), trigger }));
    let caller = if func.sig.asyncness.is_some() {
        let into_result = quote_spanned! {output_span(func)=>
            ::edgefn::__private::IntoHandlerResult::into_handler_result(#call.await)
        };
        quote! {
            fn __edgefn_call(
                source: ::std::string::String,
                messages: ::std::vec::Vec<::edgefn::__private::RawMessage>,
            ) -> ::edgefn::__private::Pending<()> {
                ::edgefn::__private::boxed(async move { #into_result })
            }
            const __EDGEFN_HANDLER: ::edgefn::__private::MessageHandler =
                ::edgefn::__private::Handler::Async(__edgefn_call);
        }
    } else {
        let into_result =
            quote_spanned! {output_span(func)=> ::edgefn::__private::IntoHandlerResult::into_handler_result(#call) };
        quote! {
            fn __edgefn_call(
                source: ::std::string::String,
                messages: ::std::vec::Vec<::edgefn::__private::RawMessage>,
            ) -> ::core::result::Result<(), ::edgefn::Error> {
                #into_result
            }
            const __EDGEFN_HANDLER: ::edgefn::__private::MessageHandler =
                ::edgefn::__private::Handler::Sync(__edgefn_call);
        }
    };
    Ok(quote! {
        const _: () = {
            #caller
            ::edgefn::__private::inventory::submit! {
                ::edgefn::__private::MessageFunction { name: #name_str, handler: __EDGEFN_HANDLER }
            }
        };
        #manifest
    })
}

/// An `invoke` function, or a `websocket` one (the host calls it the same way, with the event as its input).
fn expand_invoke(func: &ItemFn, kind: &str, trigger: Trigger) -> syn::Result<TokenStream> {
    let signature = if kind == "websocket" {
        "fn name(event: WebSocketEvent) -> Result<()>"
    } else {
        "fn name(input: T) -> Result<R> (T: Deserialize, R: Serialize)"
    };
    let input_ty =
        validate::handler(func, kind, if kind == "websocket" { "the event" } else { "the input" }, signature)?;
    let name = &func.sig.ident;
    let name_str = name.to_string();
    let record = FunctionRecord { name: name_str.clone(), trigger };
    let manifest = manifest_static(name, &encode_record(&record));
    let caller = if func.sig.asyncness.is_some() {
        let call = quote_spanned! {input_ty.span()=> #name(::edgefn::__private::decode_payload(&payload)?) };
        let into_result = quote_spanned! {output_span(func)=>
            ::edgefn::__private::IntoInvokeResult::into_invoke_result(#call.await)
        };
        quote! {
            fn __edgefn_call(payload: ::std::vec::Vec<u8>) -> ::edgefn::__private::Pending<::std::vec::Vec<u8>> {
                ::edgefn::__private::boxed(async move { #into_result })
            }
            const __EDGEFN_HANDLER: ::edgefn::__private::InvokeHandler =
                ::edgefn::__private::Handler::Async(__edgefn_call);
        }
    } else {
        let call = quote_spanned! {input_ty.span()=> #name(::edgefn::__private::decode_payload(payload)?) };
        let into_result =
            quote_spanned! {output_span(func)=> ::edgefn::__private::IntoInvokeResult::into_invoke_result(#call) };
        quote! {
            fn __edgefn_call(payload: &[u8]) -> ::core::result::Result<::std::vec::Vec<u8>, ::edgefn::Error> {
                #into_result
            }
            const __EDGEFN_HANDLER: ::edgefn::__private::InvokeHandler =
                ::edgefn::__private::Handler::Sync(__edgefn_call);
        }
    };
    Ok(quote! {
        const _: () = {
            #caller
            ::edgefn::__private::inventory::submit! {
                ::edgefn::__private::InvokeFunction { name: #name_str, handler: __EDGEFN_HANDLER }
            }
        };
        #manifest
    })
}

fn output_span(func: &ItemFn) -> proc_macro2::Span {
    match &func.sig.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => func.sig.ident.span(),
    }
}

/// An item named after `value`: a second one in the same module is a compile error at `span`.
fn unique_marker(prefix: &str, value: &str, span: proc_macro2::Span) -> TokenStream {
    let mut name = prefix.to_owned();
    for c in value.chars() {
        match c {
            c if c.is_ascii_alphanumeric() => name.push(c),
            c => name.push_str(&format!("_x{:x}", c as u32)),
        }
    }
    let ident = Ident::new(&name, span);
    quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        struct #ident;
    }
}

fn expand_http(func: &ItemFn, http: &HttpTrigger) -> syn::Result<TokenStream> {
    let request_ty = validate::http_handler(func)?;
    let name = &func.sig.ident;
    let name_str = name.to_string();
    let route = http.route.as_str();
    let method = http.method_str();
    let output = match &func.sig.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => name.span(),
    };

    // The call is spanned at the argument and the return type, so a wrong request type or a return type that is
    // not a response is reported where the user wrote it.
    let call = quote_spanned! {request_ty.span()=> #name(request) };
    let caller = if func.sig.asyncness.is_some() {
        let into_response = quote_spanned! {output=> ::edgefn::IntoResponse::into_response(#call.await) };
        quote! {
            fn __edgefn_call(request: ::edgefn::Request) -> ::edgefn::rt::LocalBoxFuture<'static, ::edgefn::Response> {
                ::edgefn::__private::boxed(async move { #into_response })
            }
            const __EDGEFN_HANDLER: ::edgefn::__private::HttpHandler = ::edgefn::__private::HttpHandler::Async(__edgefn_call);
        }
    } else {
        let into_response = quote_spanned! {output=> ::edgefn::IntoResponse::into_response(#call) };
        quote! {
            fn __edgefn_call(request: ::edgefn::Request) -> ::edgefn::Response {
                #into_response
            }
            const __EDGEFN_HANDLER: ::edgefn::__private::HttpHandler = ::edgefn::__private::HttpHandler::Sync(__edgefn_call);
        }
    };

    let record = FunctionRecord {
        name: name_str.clone(),
        trigger: Trigger::Http { route: route.to_owned(), method: method.to_owned(), auth: http.auth.clone() },
    };
    let guard = match &http.auth {
        Some(auth) => {
            let name = &auth.authorizer;
            let scopes = &auth.scopes;
            quote! {
                ::core::option::Option::Some(::edgefn::__private::Guard {
                    authorizer: #name,
                    scopes: &[#(#scopes),*],
                    host_verified: ::edgefn::__private::host_verified,
                })
            }
        }
        None => quote! { ::core::option::Option::None },
    };
    let manifest = manifest_static(name, &encode_record(&record));
    let marker = route_marker(http);

    Ok(quote! {
        const _: () = {
            #caller
            ::edgefn::__private::inventory::submit! {
                ::edgefn::__private::HttpFunction {
                    name: #name_str,
                    route: #route,
                    method: #method,
                    guard: #guard,
                    handler: __EDGEFN_HANDLER,
                }
            }
        };
        #manifest
        #marker
    })
}

/// The bytes of the function's manifest record, placed in the `edgefn-manifest` custom section. Emitted in the
/// user's crate (not the SDK) so the linker cannot drop it as unreferenced.
fn manifest_static(name: &Ident, bytes: &[u8]) -> TokenStream {
    let ident = format_ident!("__EDGEFN_MANIFEST_{}", name.to_string().to_uppercase());
    let len = bytes.len();
    let section = edgefn_manifest::SECTION_NAME;
    quote! {
        #[cfg(target_family = "wasm")]
        #[doc(hidden)]
        #[used]
        #[unsafe(link_section = #section)]
        static #ident: [u8; #len] = [#(#bytes),*];
    }
}

/// An item whose name encodes method and route shape: a second function on the same route in the same module
/// defines the same name, and rustc reports "the name ... is defined multiple times" at the route literal.
fn route_marker(http: &HttpTrigger) -> TokenStream {
    let mut name =
        format!("__edgefn_duplicate_route__{}_", if http.method_str() == "*" { "ANY" } else { http.method_str() });
    for c in http.route.shape().chars() {
        match c {
            '/' => name.push('_'),
            '{' => name.push_str("_param"),
            '*' => name.push_str("_rest"),
            '}' => {}
            c if c.is_ascii_alphanumeric() => name.push(c),
            c => name.push_str(&format!("_x{:x}", c as u32)),
        }
    }
    let ident = Ident::new(&name, http.route_span);
    quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        struct #ident;
    }
}

fn expand_init(attr: TokenStream, func: &ItemFn) -> syn::Result<TokenStream> {
    if !attr.is_empty() {
        return Err(syn::Error::new(attr.span(), "#[init] takes no arguments"));
    }
    validate::init_function(func)?;
    let name = &func.sig.ident;
    let name_str = name.to_string();
    let output = match &func.sig.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => name.span(),
    };
    let call = quote_spanned! {output=> ::edgefn::__private::IntoHandlerResult::into_handler_result(#name()) };
    let record = FunctionRecord { name: name_str.clone(), trigger: Trigger::Init };
    let manifest = manifest_static(name, &encode_record(&record));
    // A second #[init] in the same module defines this name again: a compile error at the second function. The
    // host also refuses a component whose manifest holds two init records (e.g. in different modules).
    let marker = Ident::new("__edgefn_only_one_init_function_is_allowed", name.span());
    Ok(quote! {
        const _: () = {
            fn __edgefn_init() -> ::core::result::Result<(), ::edgefn::Error> {
                #call
            }
            ::edgefn::__private::inventory::submit! {
                ::edgefn::__private::InitFunction { name: #name_str, run: __edgefn_init }
            }
        };
        #manifest
        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        struct #marker;
    })
}
