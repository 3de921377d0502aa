//! A test guest that uses only what other hosts offer too, so the same `.wasm` runs under `wasmtime serve` and on
//! edgefn:
//!
//! - `/kv` uses the portable `wasi:keyvalue` subset (open the default store, get, set, exists, delete, increment,
//!   list every key) and must answer the same on both;
//! - `/whoami` is protected by authorizer `main`: on edgefn it answers a valid token with its claims; under a host
//!   that does not enforce `auth` it must refuse every request.

use edgefn::kv::Store;
use edgefn::prelude::*;
use serde_json::json;

// ANCHOR: portable
/// Reads `greeting` (preset by the test), then exercises each portable operation and reports what it saw.
#[function(trigger = http("/kv"))]
fn portable(_req: Request) -> Result<Response> {
    let store = Store::open_default()?;
    let greeting = store.get("greeting")?.map(|v| String::from_utf8_lossy(&v).into_owned());
    store.set("scratch", b"written")?;
    let read_back = store.get("scratch")?.map(|v| String::from_utf8_lossy(&v).into_owned());
    let existed = store.exists("scratch")?;
    let first = store.increment("counter", 2)?;
    let second = store.increment("counter", 3)?;
    let counter = store.get("counter")?.map(|v| String::from_utf8_lossy(&v).into_owned());
    let mut keys = store.keys()?;
    keys.sort();
    store.delete("scratch")?;
    store.delete("counter")?;
    let exists_after_delete = store.exists("scratch")?;
    Response::json(&json!({
        "greeting": greeting,
        "read_back": read_back,
        "existed": existed,
        "increments": [first, second],
        "counter": counter,
        "keys": keys,
        "exists_after_delete": exists_after_delete,
    }))
}
// ANCHOR_END: portable

#[function(trigger = http("/whoami", auth = "main"))]
fn whoami(req: Request) -> Result<Response> {
    let claims = req.claims().ok_or_else(|| Error::new(401, "no verified token"))?;
    Response::json(claims)
}
