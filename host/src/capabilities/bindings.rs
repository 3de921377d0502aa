//! The `edgefn:function` bindings (wit/world.wit), generated once for each guest ABI:
//!
//! - [`p2`]: world `sdk`, what a WASI 0.2 SDK component imports and exports (sync `handler`);
//! - [`p3`]: world `sdk-async`, what a WASI 0.3 SDK component imports and exports (`async-handler`, and the
//!   `async-host` import). Its shared interfaces (`types`, `host`, `kv`, `wasi:keyvalue`) are [`p2`]'s, so one host
//!   implementation serves both.
//!
//! Generated code only: the host implementations (`capabilities::kv`, `runtime::guest`) and the executors import
//! these; nothing here imports any of them back, but for the one resource type a bucket is (a file of its own).

/// World `sdk`: a WASI 0.2 SDK component.
pub mod p2 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "edgefn:function/sdk",
        imports: { default: async },
        exports: { default: async },
        require_store_data_send: true,
        with: {
            "wasi:keyvalue/store.bucket": crate::capabilities::kv::KvBucket,
            "edgefn:function/objects.upload": crate::capabilities::objects::ObjectUpload,
        },
    });
}

/// World `sdk-async`: a WASI 0.3 SDK component.
pub mod p3 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "edgefn:function/sdk-async",
        imports: { default: async },
        require_store_data_send: true,
        with: {
            "edgefn:function/types": super::p2::edgefn::function::types,
            "edgefn:function/host": super::p2::edgefn::function::host,
            "edgefn:function/trace": super::p2::edgefn::function::trace,
            "edgefn:function/kv": super::p2::edgefn::function::kv,
            "edgefn:function/objects": super::p2::edgefn::function::objects,
            "edgefn:function/streams": super::p2::edgefn::function::streams,
            "edgefn:function/ratelimit": super::p2::edgefn::function::ratelimit,
            "edgefn:function/cache": super::p2::edgefn::function::cache,
            "edgefn:function/websocket": super::p2::edgefn::function::websocket,
            "edgefn:function/workflows": super::p2::edgefn::function::workflows,
            "wasi:keyvalue/store": super::p2::wasi::keyvalue::store,
            "wasi:keyvalue/atomics": super::p2::wasi::keyvalue::atomics,
            "wasi:keyvalue/batch": super::p2::wasi::keyvalue::batch,
        },
    });
}
