//! The command pattern: [`invoke`] calls another deployed function that has `trigger = invoke`, synchronously, and
//! returns its result. The host limits how deep such calls nest, so a cycle fails with an error instead of
//! recursing forever.

use crate::Error;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Calls the `invoke` function named `function` (or `component/function` when the name alone is ambiguous) with
/// `payload` as JSON and decodes its JSON result. Natively (unit tests), it calls the function in-process.
pub fn invoke<R: DeserializeOwned, P: Serialize + ?Sized>(function: &str, payload: &P) -> Result<R, Error> {
    let payload =
        serde_json::to_vec(payload).map_err(|e| Error::internal(format!("failed to encode the payload: {e}")))?;
    // Natively there is no host: the registered function runs in-process.
    #[cfg(target_family = "wasm")]
    let result = crate::host::invoke(function, &payload).map_err(Error::internal)?;
    #[cfg(not(target_family = "wasm"))]
    let result = crate::handlers::run_invoke(function, &payload).map_err(Error::internal)?;
    serde_json::from_slice(&result).map_err(|e| {
        Error::internal(format!(
            "`{function}` answered with something that is not a valid {}: {e}",
            std::any::type_name::<R>()
        ))
    })
}
