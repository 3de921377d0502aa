use edgefn::prelude::*;

#[function(trigger = cron("61 * * * *"))]
fn tick(_event: CronEvent) {}

#[function(trigger = cron("0 30 9 * * Mon-Fri", tz = "Europe/Berlinn"))]
fn report(_event: CronEvent) {}

#[function(trigger = queue("orders", batch_size = 0))]
fn process(_batch: Batch<String>) {}

#[function(trigger = queue("or ders"))]
fn spaced(_batch: Batch<String>) {}

fn main() {}
