//! A component that misbehaves on purpose, so the tests can prove the host survives it: a panic, an infinite loop,
//! a memory hog, plus a well-behaved route to show the host still serves afterwards.

use edgefn::prelude::*;

#[function(trigger = http("/ok"))]
fn ok(_req: Request) -> &'static str {
    "still here"
}

#[function(trigger = http("/panic"))]
fn panic(_req: Request) -> Response {
    panic!("this handler panics on purpose")
}

#[function(trigger = http("/loop"))]
fn spin(_req: Request) -> Response {
    let mut counter: u64 = 0;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

#[function(trigger = http("/hog"))]
fn hog(_req: Request) -> Response {
    // Keeps allocating 16 MiB blocks and touching them until the host's memory cap stops it.
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(vec![1u8; 16 << 20]);
        std::hint::black_box(&blocks);
    }
}

#[function(trigger = http("/echo", method = "POST"))]
fn echo(req: Request) -> Response {
    Response::bytes(req.body().to_vec())
}
