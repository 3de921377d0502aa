//! Hash maps whose keys cannot be frozen into a snapshot.
//!
//! ```
//! let mut visits: edgefn::collections::HashMap<String, u32> = Default::default();
//! *visits.entry("ada".into()).or_default() += 1;
//! ```

use std::hash::BuildHasher;

/// A `BuildHasher` that draws fresh SipHash-1-3 keys from the host for every map (see [`crate::random`]).
#[derive(Debug, Clone, Copy)]
pub struct RandomState {
    k0: u64,
    k1: u64,
}

impl RandomState {
    /// New keys, from the host's randomness.
    pub fn new() -> Self {
        Self { k0: crate::random::u64(), k1: crate::random::u64() }
    }
}

impl Default for RandomState {
    fn default() -> Self {
        Self::new()
    }
}

impl BuildHasher for RandomState {
    type Hasher = siphasher::sip::SipHasher13;

    fn build_hasher(&self) -> Self::Hasher {
        siphasher::sip::SipHasher13::new_with_keys(self.k0, self.k1)
    }
}

/// `std::collections::HashMap` keyed with [`RandomState`].
pub type HashMap<K, V> = std::collections::HashMap<K, V, RandomState>;
/// `std::collections::HashSet` keyed with [`RandomState`].
pub type HashSet<T> = std::collections::HashSet<T, RandomState>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_hashes_differently() {
        let (a, b) = (RandomState::new(), RandomState::new());
        assert_ne!(a.hash_one("probe"), b.hash_one("probe"));
        assert_eq!(a.hash_one("probe"), a.hash_one("probe"));
    }
}
