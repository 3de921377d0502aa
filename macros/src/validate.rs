//! Checks that the annotated item is a handler the trigger can call.

use syn::{FnArg, ItemFn, ReturnType, Type};

/// The expected shape, quoted in every signature error.
const HTTP_SIGNATURE: &str = "fn name(req: Request) -> Response (or Result<Response>, or any IntoResponse)";

/// Validates an HTTP handler and returns the type of its request argument, to span type errors at it.
pub(crate) fn http_handler(func: &ItemFn) -> syn::Result<Type> {
    let sig = &func.sig;
    if let Some(asyncness) = &sig.asyncness {
        return Err(syn::Error::new_spanned(
            asyncness,
            format!("edgefn functions are synchronous: remove `async` (expected `{HTTP_SIGNATURE}`)"),
        ));
    }
    if let Some(unsafety) = &sig.unsafety {
        return Err(syn::Error::new_spanned(unsafety, "an edgefn function cannot be `unsafe`"));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            format!("an edgefn function cannot be generic (expected `{HTTP_SIGNATURE}`)"),
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
                "an http function takes exactly one argument, the request, but `{}` takes {}: expected `{HTTP_SIGNATURE}`",
                sig.ident,
                sig.inputs.len()
            ),
        ));
    };
    let ty = match first {
        FnArg::Receiver(receiver) => {
            return Err(syn::Error::new_spanned(
                receiver,
                format!("an edgefn function is a free function, not a method: expected `{HTTP_SIGNATURE}`"),
            ));
        }
        FnArg::Typed(pat) => (*pat.ty).clone(),
    };
    if let Type::Reference(reference) = &ty {
        return Err(syn::Error::new_spanned(reference, "take the request by value: `req: Request`, not a reference"));
    }
    if let ReturnType::Default = sig.output {
        return Err(syn::Error::new_spanned(
            &sig.ident,
            format!(
                "`{}` returns nothing; an http function returns a response: expected `{HTTP_SIGNATURE}`",
                sig.ident
            ),
        ));
    }
    Ok(ty)
}

/// Validates an init function: `fn name()` or `fn name() -> Result<()>`.
pub(crate) fn init_function(func: &ItemFn) -> syn::Result<()> {
    let sig = &func.sig;
    if let Some(asyncness) = &sig.asyncness {
        return Err(syn::Error::new_spanned(asyncness, "#[init] functions are synchronous: remove `async`"));
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
