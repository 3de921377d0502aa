use edgefn::prelude::*;

#[function(trigger = stream("clicks", start = "newest"))]
fn unknown_start(_batch: Batch<String>) -> Result<()> {
    Ok(())
}

#[function(trigger = stream("clicks", on_failure = "objects.photos@a.b"))]
fn reserved_on_failure(_batch: Batch<String>) -> Result<()> {
    Ok(())
}

#[function(trigger = stream("clicks", bisect = "yes"))]
fn bisect_not_a_bool(_batch: Batch<String>) -> Result<()> {
    Ok(())
}

#[function(trigger = stream("clicks", concurrency = 4))]
fn one_batch_per_shard(_batch: Batch<String>) -> Result<()> {
    Ok(())
}

fn main() {}
