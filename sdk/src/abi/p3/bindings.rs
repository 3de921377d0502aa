//! The component's `edgefn:function` bindings for WASI 0.3 (wit/world.wit, world `sdk-async`): the `async-handler`
//! and `wizer-initialize` exports (implemented in `exports.rs`), the `host` and `async-host` imports, and the
//! key-value imports. Generated code only: the modules that call the imports depend on this one, and this one
//! depends on none of them.

wit_bindgen::generate!({
    path: "../wit",
    world: "edgefn:function/sdk-async",
    // `wasi:keyvalue` has no bindings crate the way `wasi:http` has `wasip3`: generate them here.
    generate_all,
});
