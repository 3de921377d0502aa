use edgefn::prelude::*;

struct Nothing;

#[function(trigger = http("/x"))]
fn handler(_req: Request) -> Nothing {
    Nothing
}

fn main() {}
