//! `edgefn send`, `publish`, `queues`, `dead-letters`, `redrive`: the queues and topics of a running host.

use super::admin_client::{AdminArgs, parse_json};
use super::output::{Table, answer, date, short, text};
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
    let sent = args.admin.call("POST", &format!("/v1/queues/{}/messages", args.queue), Some(request))?;
    answer(args.admin.json, &sent, |sent| {
        let ids: Vec<String> =
            sent["ids"].as_array().into_iter().flatten().map(|id| text(&json!({ "id": id }), "id")).collect();
        println!(
            "sent to {}: message {} (correlation id {})",
            args.queue,
            ids.join(", "),
            text(sent, "correlation_id")
        );
    })
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
    let published =
        args.admin.call("POST", &format!("/v1/topics/{}/messages", args.topic), Some(json!({ "body": body })))?;
    answer(args.admin.json, &published, |published| {
        let queues: Vec<String> = published["subscribers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|q| q.as_str().unwrap_or("?").to_owned())
            .collect();
        let to = if queues.is_empty() { "no subscriber: nothing stored".to_owned() } else { queues.join(", ") };
        println!("published to {}: {to} (correlation id {})", args.topic, text(published, "correlation_id"));
    })
}

#[derive(Debug, clap::Args)]
pub(crate) struct QueuesArgs {
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) fn queues(args: QueuesArgs) -> anyhow::Result<()> {
    let response = args.admin.call("GET", "/v1/queues", None)?;
    answer(args.admin.json, &response, |response| {
        let mut table = Table::new(&["QUEUE", ">READY", ">IN FLIGHT", ">DELAYED", ">DEAD"]);
        for queue in response.get("queues").and_then(Value::as_array).into_iter().flatten() {
            let n = |key: &str| queue.get(key).and_then(Value::as_u64).unwrap_or(0).to_string();
            table.row(vec![text(queue, "queue"), n("ready"), n("in_flight"), n("delayed"), n("dead")]);
        }
        table.print();
    })
}

#[derive(Debug, clap::Args)]
pub(crate) struct QueueArgs {
    /// The queue whose dead letters to act on.
    queue: String,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) fn dead_letters(args: QueueArgs) -> anyhow::Result<()> {
    let page = args.admin.call("GET", &format!("/v1/queues/{}/dead-letters", args.queue), None)?;
    answer(args.admin.json, &page, |page| {
        let mut table = Table::new(&["ID", "IN", ">ATTEMPTS", "ENQUEUED (UTC)", ">BYTES", "ERROR"]);
        for letter in page["dead_letters"].as_array().into_iter().flatten() {
            table.row(vec![
                text(letter, "id"),
                text(letter, "queue"),
                text(letter, "attempts"),
                date(letter["enqueued_at"].as_i64().unwrap_or_default()),
                text(letter, "body_len"),
                short(&text(letter, "error"), 100),
            ]);
        }
        table.print();
        if !page["next_after"].is_null() {
            eprintln!("(more dead letters than fit one page: see GET /v1/queues/{}/dead-letters?after=)", args.queue);
        }
    })
}

pub(crate) fn redrive(args: QueueArgs) -> anyhow::Result<()> {
    let moved = args.admin.call("POST", &format!("/v1/queues/{}/redrive", args.queue), Some(json!({})))?;
    answer(args.admin.json, &moved, |moved| {
        println!("re-drove {} dead letters into {}", text(moved, "redriven"), args.queue);
    })
}
