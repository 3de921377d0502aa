#[edgefn::init]
fn init(_table: Vec<u8>) {}

fn main() {}
