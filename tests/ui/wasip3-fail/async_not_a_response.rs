use edgefn::prelude::*;

#[function(trigger = http("/x"))]
async fn handler(_req: Request) -> u32 {
    7
}

fn main() {}
