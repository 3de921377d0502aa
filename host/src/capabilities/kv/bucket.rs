//! The resource a `wasi:keyvalue/store.open` returns: a store the function was granted, by name. Its own file so
//! that the generated bindings (which name it) depend on nothing else of the capability.

/// An open bucket: the name of a store the function was granted.
#[derive(Debug)]
pub struct KvBucket {
    pub(crate) store: String,
}
