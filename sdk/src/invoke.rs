//! The command pattern: [`invoke`] calls another deployed function that has `trigger = invoke`, synchronously, and
//! returns its result; with the `wasip3` feature, [`call`] does the same as a future, so the instance goes on with
//! its other tasks meanwhile. The host limits how deep such calls nest, so a cycle fails with an error instead of
//! recursing forever.

use crate::Error;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Calls the `invoke` function named `function` (or `component/function` when the name alone is ambiguous) with
/// `payload` as JSON and decodes its JSON result. Natively (unit tests), it calls the function in-process.
pub fn invoke<R: DeserializeOwned, P: Serialize + ?Sized>(function: &str, payload: &P) -> Result<R, Error> {
    let payload = encode(payload)?;
    // Natively there is no host: the registered function runs in-process.
    #[cfg(target_family = "wasm")]
    let result = crate::host::invoke(function, &payload).map_err(Error::internal)?;
    #[cfg(not(target_family = "wasm"))]
    let result = crate::handlers::run_invoke(function, &payload).map_err(Error::internal)?;
    decode(function, &result)
}

/// [`invoke`], awaited: while the other function runs, this instance goes on with its other tasks.
#[cfg(edgefn_async)]
pub async fn call<R: DeserializeOwned, P: Serialize + ?Sized>(function: &str, payload: &P) -> Result<R, Error> {
    let payload = encode(payload)?;
    #[cfg(target_family = "wasm")]
    let result = crate::abi::bindings::edgefn::function::async_host::invoke(function.to_owned(), payload).await;
    #[cfg(not(target_family = "wasm"))]
    let result = crate::handlers::run_invoke_async(function.to_owned(), payload).await;
    decode(function, &result.map_err(Error::internal)?)
}

fn encode<P: Serialize + ?Sized>(payload: &P) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(payload).map_err(|e| Error::internal(format!("failed to encode the payload: {e}")))
}

fn decode<R: DeserializeOwned>(function: &str, result: &[u8]) -> Result<R, Error> {
    crate::error::from_json(result).map_err(|e| {
        Error::internal(format!(
            "`{function}` answered with something that is not a valid {}: {e}",
            std::any::type_name::<R>()
        ))
    })
}
