//! A component whose init fails: the host must refuse to deploy it and say why.

use edgefn::prelude::*;

#[edgefn::init]
fn init() -> Result<()> {
    Err(Error::internal("cannot load the routing table: bundled data is empty"))
}

#[function(trigger = http("/never"))]
fn never(_req: Request) -> &'static str {
    "unreachable: this component is never deployed"
}
