//! `edgefn send`, `publish`, `queues`, `dead-letters`, `redrive`: the queues and topics of a running host.

use super::admin_client::{AdminArgs, parse_json, print};
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub(crate) struct SendArgs {
    /// The queue.
    queue: String,
    /// The message body, as JSON: `'{"id":1}'`.
    body: String,
    /// Deliver no earlier than this many milliseconds from now.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Higher priorities are delivered first.
    #[arg(long, default_value_t = 0)]
    priority: i32,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) fn send(args: SendArgs) -> anyhow::Result<()> {
    let body = parse_json("the message", &args.body)?;
    let request = json!({ "body": body, "delay_ms": args.delay_ms, "priority": args.priority });
    print(&args.admin.call("POST", &format!("/v1/queues/{}/messages", args.queue), Some(request))?)
}

#[derive(Debug, clap::Args)]
pub(crate) struct PublishArgs {
    /// The topic.
    topic: String,
    /// The message body, as JSON.
    body: String,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let body = parse_json("the message", &args.body)?;
    print(&args.admin.call("POST", &format!("/v1/topics/{}/messages", args.topic), Some(json!({ "body": body })))?)
}

#[derive(Debug, clap::Args)]
pub(crate) struct QueuesArgs {
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) fn queues(args: QueuesArgs) -> anyhow::Result<()> {
    let response = args.admin.call("GET", "/v1/queues", None)?;
    println!("{:40} {:>8} {:>9} {:>8} {:>6}", "QUEUE", "READY", "IN FLIGHT", "DELAYED", "DEAD");
    for queue in response.get("queues").and_then(Value::as_array).into_iter().flatten() {
        let n = |key: &str| queue.get(key).and_then(Value::as_u64).unwrap_or(0);
        let name = queue.get("queue").and_then(Value::as_str).unwrap_or_default();
        println!("{name:40} {:>8} {:>9} {:>8} {:>6}", n("ready"), n("in_flight"), n("delayed"), n("dead"));
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(crate) struct QueueArgs {
    /// The queue whose dead letters to act on.
    queue: String,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) fn dead_letters(args: QueueArgs) -> anyhow::Result<()> {
    print(&args.admin.call("GET", &format!("/v1/queues/{}/dead-letters", args.queue), None)?)
}

pub(crate) fn redrive(args: QueueArgs) -> anyhow::Result<()> {
    print(&args.admin.call("POST", &format!("/v1/queues/{}/redrive", args.queue), Some(json!({})))?)
}
