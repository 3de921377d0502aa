use edgefn::prelude::*;

#[function(trigger = cron("0 0 * * * *"))]
async fn tick(_event: &CronEvent) -> Result<()> {
    Ok(())
}

fn main() {}
