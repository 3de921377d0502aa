//! The resource `edgefn:function/objects.put` returns: an object being written. Its own file so that the generated
//! bindings (which name it) depend on nothing else of the capability.

/// An upload in progress, and the bucket it was granted for.
#[derive(Debug)]
pub struct ObjectUpload {
    pub(crate) upload: crate::storage::objects::Upload,
}
