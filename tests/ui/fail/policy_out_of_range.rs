use edgefn::prelude::*;

#[function(trigger = cron("* * * * * *", retries = 4000000000))]
fn retries_forever(_event: CronEvent) -> Result<()> {
    Ok(())
}

#[function(trigger = cron("* * * * * *", backoff_ms = 18446744073709551000))]
fn backs_off_forever(_event: CronEvent) -> Result<()> {
    Ok(())
}

#[function(trigger = queue("orders", max_wait_ms = 99999999999))]
fn waits_forever(_batch: Batch<u32>) -> Result<()> {
    Ok(())
}

fn main() {}
