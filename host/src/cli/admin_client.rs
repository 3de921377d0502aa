//! The CLI commands that talk to a running host's admin API: `send`, `publish`, `invoke`, `queues`,
//! `dead-letters`, `redrive`, `runs`.

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use std::path::PathBuf;

/// Where the admin API is and how to authenticate.
#[derive(Debug, clap::Args)]
pub(crate) struct AdminArgs {
    /// The admin API of the running host.
    #[arg(long, env = "EDGEFN_ADMIN_URL", default_value = "http://127.0.0.1:8081", global = true)]
    admin: String,
    /// The admin token; read from `<data>/admin-token` when not given.
    #[arg(long, env = "EDGEFN_ADMIN_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// The host's data directory, where its admin token is.
    #[arg(long, default_value = "./.edgefn", global = true)]
    data: PathBuf,
}

impl AdminArgs {
    fn token(&self) -> anyhow::Result<String> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        let path = self.data.join(crate::admin::TOKEN_FILE);
        let token = std::fs::read_to_string(&path).with_context(|| {
            format!("failed to read the admin token from {} (give --token, or the host's --data)", path.display())
        })?;
        Ok(token.trim().to_owned())
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.admin.trim_end_matches('/'));
        let request = ureq::request(method, &url).set("authorization", &format!("Bearer {}", self.token()?));
        let result = match body {
            Some(body) => request.send_json(body),
            None => request.call(),
        };
        let response = match result {
            Ok(response) => response,
            Err(ureq::Error::Status(status, response)) => {
                let body: Value = response.into_json().unwrap_or(Value::Null);
                let message = body.get("error").and_then(Value::as_str).unwrap_or("no details");
                bail!("{status}: {message}");
            }
            Err(error) => bail!("could not reach the admin API at {url}: {error} (is `edgefn up` running?)"),
        };
        Ok(response.into_json()?)
    }
}

fn parse_json(what: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("{what} is not valid JSON: {text}"))
}

fn print(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

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
pub(crate) struct InvokeArgs {
    /// The function: `name`, or `component/name` when the name alone is ambiguous.
    function: String,
    /// The JSON payload of an `invoke` function.
    payload: Option<String>,
    /// Fire a cron function now (recorded in its history as `manual`).
    #[arg(long)]
    cron: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) fn invoke(args: InvokeArgs) -> anyhow::Result<()> {
    let function = args.function.replace('/', "%2F");
    if args.cron {
        let run = args.admin.call("POST", &format!("/v1/functions/{function}/invoke?cron"), Some(Value::Null))?;
        print(&run)?;
        if run.get("outcome").and_then(Value::as_str) != Some("succeeded") {
            bail!("the run failed");
        }
        return Ok(());
    }
    let payload = match &args.payload {
        Some(text) => parse_json("the payload", text)?,
        None => Value::Null,
    };
    let response = args.admin.call("POST", &format!("/v1/functions/{function}/invoke"), Some(payload))?;
    print(response.get("result").unwrap_or(&Value::Null))
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

#[derive(Debug, clap::Args)]
pub(crate) struct RunsArgs {
    /// The cron function.
    function: String,
    /// How many runs, newest first.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) fn runs(args: RunsArgs) -> anyhow::Result<()> {
    let function = args.function.replace('/', "%2F");
    print(&args.admin.call("GET", &format!("/v1/functions/{function}/runs?limit={}", args.limit), None)?)
}
