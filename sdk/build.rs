//! Names the three ways this crate is built, so the code says which it means in one word:
//!
//! - `edgefn_p2`: a WASI 0.2 component (wasm, without the `wasip3` feature): sync handlers over whole bodies;
//! - `edgefn_p3`: a WASI 0.3 component (wasm, with `wasip3`): async handlers, streamed bodies, concurrent calls;
//! - `edgefn_async`: wherever async handlers exist: `edgefn_p3`, and natively (unit tests), where they run on a
//!   simple executor.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(edgefn_p2, edgefn_p3, edgefn_async)");
    let wasm = std::env::var("CARGO_CFG_TARGET_FAMILY").is_ok_and(|family| family.split(',').any(|f| f == "wasm"));
    let wasip3 = std::env::var_os("CARGO_FEATURE_WASIP3").is_some();
    if wasm && wasip3 {
        println!("cargo::rustc-cfg=edgefn_p3");
    }
    if wasm && !wasip3 {
        println!("cargo::rustc-cfg=edgefn_p2");
    }
    if !wasm || wasip3 {
        println!("cargo::rustc-cfg=edgefn_async");
    }
}
