#[edgefn::init]
async fn init() {}

fn main() {}
