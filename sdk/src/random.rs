//! Randomness that is safe across snapshots.
//!
//! Every call asks the host for fresh random bytes (`wasi:random`), so nothing random is ever cached in memory,
//! and a snapshot taken after `#[edgefn::init]` cannot make two instances draw the same values. Compare userland
//! generators seeded once (in init, or lazily in a static), whose state the snapshot would freeze and every
//! instance would then replay.
//!
//! The same hazard hits hash maps: std's `RandomState` caches its keys the first time it is used. If init used a
//! std `HashMap`, the keys are frozen into the snapshot, and every instance hashes the same way. That makes hash
//! flooding practical again. [`crate::collections::HashMap`] draws fresh keys from this module for every map.

/// A random `u64` from the host.
pub fn u64() -> u64 {
    #[cfg(target_family = "wasm")]
    {
        wasip2::random::random::get_random_u64()
    }
    #[cfg(not(target_family = "wasm"))]
    {
        use std::hash::{BuildHasher, RandomState};
        use std::sync::atomic::{AtomicU64, Ordering};
        // Natively (unit tests) std's per-process random keys plus a counter are enough.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        RandomState::new().hash_one((COUNTER.fetch_add(1, Ordering::Relaxed), std::time::SystemTime::now()))
    }
}

/// `len` random bytes from the host.
pub fn bytes(len: usize) -> Vec<u8> {
    #[cfg(target_family = "wasm")]
    {
        wasip2::random::random::get_random_bytes(len as u64)
    }
    #[cfg(not(target_family = "wasm"))]
    {
        (0..len.div_ceil(8)).flat_map(|_| u64().to_le_bytes()).take(len).collect()
    }
}

/// A random id: 128 bits from the host, as 32 hex digits.
pub fn id() -> String {
    format!("{:016x}{:016x}", u64(), u64())
}
