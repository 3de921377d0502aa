use edgefn::objects::{Bucket, ObjectEvent};
use edgefn::prelude::*;

#[function(trigger = object("photos", events = ["created", "deleted"], prefix = "uploads/", max_retries = 5))]
fn follow(batch: Batch<ObjectEvent>) -> Result<()> {
    let thumbnails = Bucket::open("thumbnails");
    for message in &batch {
        let event = message.body();
        if event.event == "deleted" {
            thumbnails.delete(&event.key)?;
        }
    }
    Ok(())
}

#[function(trigger = object("everything"))]
fn every_change(_batch: Batch<ObjectEvent>) -> Result<()> {
    Ok(())
}

fn main() {}
