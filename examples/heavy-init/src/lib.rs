//! A function with an expensive `#[edgefn::init]`: it builds a 64 Ki-entry lookup table whose every entry costs
//! thousands of hash rounds (well over 100 ms in total). On the edgefn host init runs once, at deploy, and every
//! request starts from the snapshot. Without a snapshot (e.g. `wasmtime serve`), every fresh instance pays it.
//!
//! Routes:
//! - `/heavy/lookup/{n}`: an entry of the table;
//! - `/heavy/init-count`: how many times init ran in this instance's memory (1: it ran once, before this request);
//! - `/heavy/random`: a random id from the host (differs on every request, snapshot or not);
//! - `/heavy/hash`: the hash of a fixed key under a fresh `edgefn::collections::RandomState` (differs too).

use edgefn::prelude::*;
use std::hash::BuildHasher as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

const TABLE_LEN: usize = 1 << 16;
const ROUNDS: u32 = 3_000;

// ANCHOR: init
static TABLE: OnceLock<Vec<u64>> = OnceLock::new();
static INIT_COUNT: AtomicU32 = AtomicU32::new(0);

fn expensive(seed: u64) -> u64 {
    // splitmix64, iterated: cheap to write, impossible for the compiler to fold away.
    let mut x = seed;
    for _ in 0..ROUNDS {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x = z ^ (z >> 31);
    }
    x
}

#[edgefn::init]
fn init() {
    INIT_COUNT.fetch_add(1, Ordering::SeqCst);
    TABLE.get_or_init(|| (0..TABLE_LEN as u64).map(expensive).collect());
}
// ANCHOR_END: init

#[function(trigger = http("/heavy/lookup/{n}"))]
fn lookup(req: Request) -> Result<Response> {
    let n: usize = req.param("n").unwrap_or_default().parse().map_err(|_| Error::bad_request("n must be a number"))?;
    let table = TABLE.get().ok_or_else(|| Error::internal("init did not run"))?;
    Ok(Response::text(table[n % TABLE_LEN].to_string()))
}

#[function(trigger = http("/heavy/init-count"))]
fn init_count(_req: Request) -> String {
    INIT_COUNT.load(Ordering::SeqCst).to_string()
}

// ANCHOR: random
#[function(trigger = http("/heavy/random"))]
fn random(_req: Request) -> String {
    edgefn::random::id()
}

#[function(trigger = http("/heavy/hash"))]
fn hash(_req: Request) -> String {
    edgefn::collections::RandomState::new().hash_one("probe").to_string()
}
// ANCHOR_END: random

#[cfg(test)]
mod tests {
    use super::*;
    use edgefn::testing;

    #[test]
    fn init_runs_once_before_the_first_request() {
        let first = testing::call(testing::get("/heavy/lookup/3"));
        assert_eq!(first.text_body(), expensive(3).to_string());
        assert_eq!(testing::call(testing::get("/heavy/init-count")).text_body(), "1");
    }
}
