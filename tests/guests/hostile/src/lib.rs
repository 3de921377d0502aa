//! A test-only component that tries, on purpose, what a hostile tenant would: compute forever, print without end,
//! hold memory, answer with bodies nobody reads, flood a queue, settle one message over and over with huge reasons,
//! and call the host's own admin API. The isolation tests run it next to well-behaved functions, which must keep
//! working. Every route reports what really happened, so a test sees whether the host stopped it.

use edgefn::prelude::*;
use serde_json::json;
use std::time::Duration;

fn number(req: &Request, name: &str, default: u64) -> u64 {
    req.query(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Computes until its deadline kills it.
#[function(trigger = http("/hostile/spin"))]
fn spin(_req: Request) -> Response {
    let mut counter: u64 = 0;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

/// Prints `?mb=` MiB of lines to stdout, as fast as it can.
#[function(trigger = http("/hostile/print"))]
fn print(req: Request) -> String {
    let line = "x".repeat(1023);
    let lines = number(&req, "mb", 1) * 1024;
    for _ in 0..lines {
        println!("{line}");
    }
    format!("printed {lines} lines")
}

/// Prints the secret `API_SECRET` so that it straddles the host's 8 KiB output cut: `?offset=` bytes of it end one
/// 8 KiB piece, the rest starts the next.
#[function(trigger = http("/hostile/leak"))]
fn leak(req: Request) -> Result<String> {
    use std::io::Write as _;
    let secret = edgefn::config::require("API_SECRET")?;
    let offset = (number(&req, "offset", 3) as usize).min(secret.len());
    let mut out = std::io::stdout().lock();
    // No newline before the secret: the host has to cut this line.
    let mut line = vec![b'y'; 8192 - offset];
    line.extend_from_slice(&secret.as_bytes()[..offset]);
    out.write_all(&line)?;
    out.flush()?;
    out.write_all(&secret.as_bytes()[offset..])?;
    out.write_all(b" <- was the secret\n")?;
    out.flush()?;
    Ok("printed".into())
}

/// Allocates and touches `?mb=` MiB, holds them for `?ms=` milliseconds, then answers how much it got and when
/// it held it all (wall-clock milliseconds), so a test can tell which hogs held memory at the same time.
#[function(trigger = http("/hostile/hold"))]
fn hold(req: Request) -> Result<String> {
    let mb = number(&req, "mb", 100) as usize;
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    for _ in 0..mb {
        let mut block = Vec::new();
        if block.try_reserve_exact(1 << 20).is_err() {
            break;
        }
        block.resize(1 << 20, 1u8);
        blocks.push(block);
    }
    let from = unix_ms();
    std::thread::sleep(Duration::from_millis(number(&req, "ms", 1000)));
    Ok(format!("held {} MiB from {from} to {}", std::hint::black_box(&blocks).len(), unix_ms()))
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

/// Answers with a body of `?mb=` MiB.
#[function(trigger = http("/hostile/big"))]
fn big(req: Request) -> Response {
    Response::bytes(vec![b'z'; (number(&req, "mb", 8) << 20) as usize])
}

/// Sends 1 MiB messages to `hostile-flood` until the host refuses one, then says how many it sent and why it
/// stopped.
#[function(trigger = http("/hostile/flood"))]
fn flood(req: Request) -> Result<Response> {
    let body = edgefn::queue::Raw(vec![b'f'; (number(&req, "kib", 1024) << 10) as usize]);
    let most = number(&req, "most", 100_000);
    let mut sent = 0u64;
    let mut refusal = None;
    while sent < most {
        match edgefn::queue::send_bytes("hostile-flood", &body.0, edgefn::queue::SendOptions::new()) {
            Ok(_) => sent += 1,
            Err(error) => {
                refusal = Some(error.message().to_owned());
                break;
            }
        }
    }
    Response::json(&json!({ "sent": sent, "refused": refusal }))
}

/// Calls `?url=` (the host's own admin API, in the test) and answers with what happened.
#[function(trigger = http("/hostile/call"))]
fn call(req: Request) -> Result<Response> {
    let url = req.query("url").ok_or_else(|| Error::bad_request("missing ?url="))?;
    match edgefn::fetch::get(url) {
        Ok(response) => Response::json(&json!({ "status": response.status().as_u16() })),
        Err(error) => Response::json(&json!({ "error": error.message() })),
    }
}

/// Settles each message 20 times, dead-lettering it with a 50 MB reason.
#[function(trigger = queue("hostile-settle", batch_size = 1, max_wait_ms = 0))]
fn settle_over_and_over(batch: Batch<serde_json::Value>) -> Result<()> {
    let reason = "r".repeat(50 << 20);
    for message in &batch {
        for _ in 0..20 {
            message.dead_letter(reason.clone());
        }
    }
    Ok(())
}

/// What a marker word starts with: a constant in the code, so never in linear memory until a marker is written.
const MARKER_MAGIC: u64 = 0x4544_4745_464e_4d4b;

/// Checks that this instance's memory holds nothing an earlier instance wrote: scans all of its linear memory for
/// markers (`MARKER_MAGIC` followed by a nonce), then writes `?mb=` MiB of its own, with a fresh random nonce, and
/// scans again. Answers how many markers each scan found: the first must be 0 on a fresh instance, the second the
/// number written (which proves the scan sees markers at all).
#[function(trigger = http("/hostile/fresh-memory"))]
fn fresh_memory(req: Request) -> Result<Response> {
    let before = markers_in_memory()?;
    let words = (number(&req, "mb", 4) as usize) << 17;
    let nonce = {
        use std::hash::{BuildHasher as _, Hasher as _};
        // Seeded from the host's randomness (`wasi:random`) in every instance.
        std::collections::hash_map::RandomState::new().build_hasher().finish()
    };
    let mut written = vec![0_u64; words];
    for pair in written.chunks_exact_mut(2) {
        pair[0] = MARKER_MAGIC;
        pair[1] = nonce;
    }
    let after = markers_in_memory()?;
    let pairs = written.len() / 2;
    drop(std::hint::black_box(written));
    Response::json(&json!({ "before": before, "after": after, "written": pairs }))
}

/// How many 8-byte-aligned words of this instance's linear memory hold `MARKER_MAGIC`.
#[cfg(target_arch = "wasm32")]
fn markers_in_memory() -> Result<u64> {
    let end = core::arch::wasm32::memory_size(0) * 65536;
    let mut found = 0;
    // From 8: the null address is not a pointer Rust may read through.
    for address in (8..end).step_by(8) {
        // SAFETY: on wasm32 every address below the memory's current size is mapped and readable, whatever Rust
        // allocated there; the read is volatile, so the compiler assumes nothing about what it reads.
        let word = unsafe { core::ptr::read_volatile(address as *const u64) };
        if word == MARKER_MAGIC {
            found += 1;
        }
    }
    Ok(found)
}

#[cfg(not(target_arch = "wasm32"))]
fn markers_in_memory() -> Result<u64> {
    Err(Error::internal("only a component can scan its linear memory"))
}
