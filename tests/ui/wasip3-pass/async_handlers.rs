use edgefn::prelude::*;
use std::time::Duration;

#[function(trigger = http("/hello/{name}"))]
async fn hello(req: Request) -> Response {
    Response::text(format!("Hello, {}!", req.param("name").unwrap_or("world")))
}

#[function(trigger = http("/upload", method = "POST"))]
async fn upload(req: Request) -> Result<Response> {
    let mut body = req.body_stream();
    let mut bytes = 0;
    while let Some(chunk) = body.next().await {
        bytes += chunk?.len();
    }
    Ok(Response::text(bytes.to_string()))
}

#[function(trigger = http("/events"))]
async fn events(_req: Request) -> Response {
    Response::sse(|mut events| async move {
        events.send(Event::data("one")).await?;
        edgefn::rt::sleep(Duration::from_millis(1)).await;
        events.send(Event::data("two")).await
    })
}

#[function(trigger = cron("0 0 * * * *"))]
async fn hourly(_event: CronEvent) -> Result<()> {
    edgefn::rt::sleep(Duration::from_millis(1)).await;
    Ok(())
}

#[function(trigger = queue("jobs"))]
async fn jobs(batch: Batch<u32>) -> Result<()> {
    for message in &batch {
        message.ack();
    }
    Ok(())
}

#[function(trigger = invoke)]
async fn double(n: u64) -> Result<u64> {
    Ok(n * 2)
}

fn main() {
    // The functions stay callable as written, and run natively through the dispatcher.
    let greeting = edgefn::rt::block_on(hello(edgefn::testing::get("/hello/ada")));
    assert_eq!(greeting.text_body(), "Hello, ada!");
    let request = edgefn::testing::request("POST", "/upload").body_chunks(["ab", "cde"]);
    assert_eq!(edgefn::testing::call(request).text_body(), "5");
    let sent = edgefn::testing::sse_events(edgefn::testing::call(edgefn::testing::get("/events"))).unwrap();
    assert_eq!(sent.len(), 2);
    assert_eq!(edgefn::invoke::<u64, _>("double", &21).unwrap(), 42);
    let _ = (hourly, jobs);
}
