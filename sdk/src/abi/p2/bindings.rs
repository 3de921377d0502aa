//! The component's `edgefn:function` bindings (wit/world.wit, world `sdk`): the `handler` and `wizer-initialize`
//! exports (implemented in `exports.rs`), the `host` import, and the key-value imports (`wasi:keyvalue` and
//! edgefn's `kv`). Only compiled for wasm. Generated code only: the modules that call the imports depend on this
//! one, and this one depends on none of them.

wit_bindgen::generate!({
    path: "../wit",
    world: "edgefn:function/sdk",
    // `wasi:keyvalue` has no bindings crate the way `wasi:http` has `wasip2`: generate them here.
    generate_all,
});
