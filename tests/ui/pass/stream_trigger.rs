use edgefn::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Click {
    page: String,
}

#[function(trigger = stream("clicks", batch_size = 100, max_wait_ms = 500, start = "latest"))]
fn count(batch: Batch<Click>) -> Result<()> {
    for message in &batch {
        let _key: Option<&str> = message.partition_key();
        let _at: Option<edgefn::stream::Position> = message.stream_position();
        let _page = &message.body().page;
    }
    Ok(())
}

#[function(trigger = stream("clicks", start = "oldest", bisect = false, max_retries = 5, max_record_age_ms = 60000, on_failure = "clicks-failed", backoff_ms = 100))]
fn archive(_batch: Batch<Click>) -> Result<()> {
    edgefn::stream::put("archive", "all", &Click { page: "/".into() })?;
    Ok(())
}

fn main() {}
