use edgefn::prelude::*;

#[function(trigger = object("photos", events = ["updated"]))]
fn unknown_event(_batch: Batch<ObjectEvent>) -> Result<()> {
    Ok(())
}

#[function(trigger = object("no/slashes"))]
fn bad_bucket(_batch: Batch<ObjectEvent>) -> Result<()> {
    Ok(())
}

#[function(trigger = object("photos", shard = 3))]
fn unknown_key(_batch: Batch<ObjectEvent>) -> Result<()> {
    Ok(())
}

fn main() {}
