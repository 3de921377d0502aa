//! Purging the host's response cache. A GET function's response is cached by the host when its `Cache-Control`
//! lets a shared cache keep it (`s-maxage=60`, or `max-age=60` without `private`); a `Cache-Tag` header names
//! tags to purge it by. When the data behind it changes, purge it:
//!
//! ```no_run
//! # fn run() -> edgefn::Result<()> {
//! edgefn::cache::purge_path("/products/42")?;   // every query string and variant of that path
//! edgefn::cache::purge_path("/products/*")?;    // everything below /products/
//! edgefn::cache::purge_tag("product-42")?;      // every response tagged `Cache-Tag: product-42`
//! # Ok(()) }
//! ```
//!
//! A function purges its own component's entries only. Natively (unit tests) there is no cache: nothing is purged.

use crate::Result;

/// Drops the cached responses for `path`; `/prefix/*` drops every path below `/prefix/`. Returns how many.
pub fn purge_path(path: &str) -> Result<u64> {
    imp::purge_path(path)
}

/// Drops the cached responses whose `Cache-Tag` header named `tag`. Returns how many.
pub fn purge_tag(tag: &str) -> Result<u64> {
    imp::purge_tag(tag)
}

#[cfg(target_family = "wasm")]
mod imp {
    use crate::abi::bindings::edgefn::function::cache;
    use crate::{Error, Result};

    pub(super) fn purge_path(path: &str) -> Result<u64> {
        cache::purge_path(path).map_err(Error::internal)
    }

    pub(super) fn purge_tag(tag: &str) -> Result<u64> {
        cache::purge_tag(tag).map_err(Error::internal)
    }
}

#[cfg(not(target_family = "wasm"))]
mod imp {
    use crate::Result;

    pub(super) fn purge_path(_path: &str) -> Result<u64> {
        Ok(0)
    }

    pub(super) fn purge_tag(_tag: &str) -> Result<u64> {
        Ok(0)
    }
}
