//! Checks that the annotated item is a handler the trigger can call.

use syn::visit::Visit;
use syn::{FnArg, ItemFn, ReturnType, Type};

/// The expected shape, quoted in every signature error.
const HTTP_SIGNATURE: &str = "fn name(req: Request) -> Response (or Result<Response>, or any IntoResponse)";

/// Validates an HTTP handler and returns the type of its request argument, to span type errors at it.
pub(crate) fn http_handler(func: &ItemFn) -> syn::Result<Type> {
    handler(func, "http", "the request", HTTP_SIGNATURE)
}

/// Validates a handler of `kind` taking exactly one argument (`what`), and returns that argument's type. An `async fn`
/// is a handler too, where the SDK builds WASI 0.3 components (its `wasip3` feature).
pub(crate) fn handler(func: &ItemFn, kind: &str, what: &str, signature: &str) -> syn::Result<Type> {
    let sig = &func.sig;
    let signature = &if sig.asyncness.is_some() { format!("async {signature}") } else { signature.to_owned() };
    if let Some(asyncness) = &sig.asyncness
        && !cfg!(feature = "wasip3")
    {
        return Err(syn::Error::new_spanned(
            asyncness,
            "an `async fn` handler needs a WASI 0.3 component: turn on the SDK's `wasip3` feature \
             (`edgefn = { ..., features = [\"wasip3\"] }`), or remove `async`",
        ));
    }
    if sig.asyncness.is_none()
        && let Some(awaited) = first_await(&func.block)
    {
        return Err(syn::Error::new(
            awaited,
            format!("`.await` in a sync handler: make it `async fn {}` (expected `{signature}`)", sig.ident),
        ));
    }
    if let Some(unsafety) = &sig.unsafety {
        return Err(syn::Error::new_spanned(unsafety, "an edgefn function cannot be `unsafe`"));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            format!("an edgefn function cannot be generic (expected `{signature}`)"),
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new_spanned(variadic, "an edgefn function cannot be variadic"));
    }
    let mut inputs = sig.inputs.iter();
    let (Some(first), None) = (inputs.next(), inputs.next()) else {
        let spanned: &dyn quote::ToTokens = if sig.inputs.is_empty() { &sig.ident } else { &sig.inputs };
        return Err(syn::Error::new_spanned(
            spanned,
            format!(
                "{} {kind} function takes exactly one argument, {what}, but `{}` takes {}: expected `{signature}`",
                article(kind),
                sig.ident,
                sig.inputs.len()
            ),
        ));
    };
    let ty = match first {
        FnArg::Receiver(receiver) => {
            return Err(syn::Error::new_spanned(
                receiver,
                format!("an edgefn function is a free function, not a method: expected `{signature}`"),
            ));
        }
        FnArg::Typed(pat) => (*pat.ty).clone(),
    };
    if let Type::Reference(reference) = &ty {
        return Err(syn::Error::new_spanned(
            reference,
            format!("take {what} by value, not a reference: expected `{signature}`"),
        ));
    }
    // Cron, queue, topic and websocket functions may return nothing (success); http and invoke ones must answer.
    if matches!(sig.output, ReturnType::Default) && matches!(kind, "http" | "invoke") {
        return Err(syn::Error::new_spanned(
            &sig.ident,
            format!(
                "`{}` returns nothing; a {kind} function returns {}: expected `{signature}`",
                sig.ident,
                if kind == "http" { "a response" } else { "a result" }
            ),
        ));
    }
    Ok(ty)
}

/// The shape of a workflow function, quoted in its signature errors.
const WORKFLOW_SIGNATURE: &str = "async fn name(wf: Workflow, input: T) -> Result<R> (T: Deserialize, R: Serialize)";

/// Validates a workflow function and returns the type of its input (its second argument).
pub(crate) fn workflow_function(func: &ItemFn) -> syn::Result<Type> {
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(
            &sig.ident,
            format!("a workflow function is `async` (its steps are awaited): expected `{WORKFLOW_SIGNATURE}`"),
        ));
    }
    if let Some(asyncness) = &sig.asyncness
        && !cfg!(feature = "wasip3")
    {
        return Err(syn::Error::new_spanned(
            asyncness,
            "a workflow function needs a WASI 0.3 component: turn on the SDK's `wasip3` feature \
             (`edgefn = { ..., features = [\"wasip3\"] }`)",
        ));
    }
    if let Some(unsafety) = &sig.unsafety {
        return Err(syn::Error::new_spanned(unsafety, "an edgefn function cannot be `unsafe`"));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            format!("an edgefn function cannot be generic (expected `{WORKFLOW_SIGNATURE}`)"),
        ));
    }
    let typed: Vec<&syn::PatType> = sig
        .inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(typed) => Some(typed),
            FnArg::Receiver(_) => None,
        })
        .collect();
    if typed.len() != 2 || typed.len() != sig.inputs.len() {
        let spanned: &dyn quote::ToTokens = if sig.inputs.is_empty() { &sig.ident } else { &sig.inputs };
        return Err(syn::Error::new_spanned(
            spanned,
            format!(
                "a workflow function takes two arguments, the workflow and the input, but `{}` takes {}: \
                 expected `{WORKFLOW_SIGNATURE}`",
                sig.ident,
                sig.inputs.len()
            ),
        ));
    }
    for typed in &typed {
        if let Type::Reference(reference) = &*typed.ty {
            return Err(syn::Error::new_spanned(
                reference,
                format!("take the workflow and the input by value, not by reference: expected `{WORKFLOW_SIGNATURE}`"),
            ));
        }
    }
    if matches!(sig.output, ReturnType::Default) {
        return Err(syn::Error::new_spanned(
            &sig.ident,
            format!("`{}` returns nothing; a workflow returns its result: expected `{WORKFLOW_SIGNATURE}`", sig.ident),
        ));
    }
    Ok((*typed[1].ty).clone())
}

/// "an http function", "a cron function", "an invoke function".
fn article(kind: &str) -> &'static str {
    if kind == "http" || kind.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
}

/// Validates an init function: `fn name()` or `fn name() -> Result<()>`.
pub(crate) fn init_function(func: &ItemFn) -> syn::Result<()> {
    let sig = &func.sig;
    if let Some(asyncness) = &sig.asyncness {
        return Err(syn::Error::new_spanned(
            asyncness,
            "#[init] cannot be `async`: it runs once at deploy, with nothing to wait on, and its memory is snapshotted; \
             remove `async` (await things in a handler instead)",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(&sig.generics, "an #[init] function cannot be generic"));
    }
    if !sig.inputs.is_empty() {
        return Err(syn::Error::new_spanned(
            &sig.inputs,
            "an #[init] function takes no arguments: expected `fn init()` or `fn init() -> Result<()>`",
        ));
    }
    Ok(())
}

/// Where the first `.await` of `body` is, outside any `async` block or closure and any nested function (where it
/// belongs to those, not to the handler).
fn first_await(body: &syn::Block) -> Option<proc_macro2::Span> {
    struct Finder(Option<proc_macro2::Span>);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_expr_await(&mut self, awaited: &'ast syn::ExprAwait) {
            if self.0.is_none() {
                self.0 = Some(awaited.await_token.span);
            }
        }
        fn visit_expr_async(&mut self, _: &'ast syn::ExprAsync) {}
        fn visit_expr_closure(&mut self, closure: &'ast syn::ExprClosure) {
            if closure.asyncness.is_none() {
                syn::visit::visit_expr_closure(self, closure);
            }
        }
        fn visit_item(&mut self, _: &'ast syn::Item) {}
    }
    let mut finder = Finder(None);
    finder.visit_block(body);
    finder.0
}
