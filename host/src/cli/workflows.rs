//! `edgefn workflows list|show|start|signal|cancel|retry`: a running host's durable workflow runs.

use super::admin_client::AdminArgs;
use super::output::{Table, answer, date, short, text};
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub(crate) struct WorkflowsArgs {
    #[command(subcommand)]
    command: WorkflowsCommand,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Debug, clap::Subcommand)]
enum WorkflowsCommand {
    /// Runs, newest first.
    List {
        /// Only runs in this state: ready, retrying, sleeping, waiting, done, failed, cancelling or cancelled.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// A run's timeline: each journaled step, sleep and wait, failed attempts, and what it waits for now.
    Show { run: String },
    /// Start a run of a workflow with a JSON input; `--id` names it (the same id twice starts one run).
    Start {
        workflow: String,
        #[arg(default_value = "null")]
        input: String,
        #[arg(long)]
        id: Option<String>,
    },
    /// Send an event (with a JSON payload) to a run: it resumes if it waits for that event, else it is kept.
    Signal {
        run: String,
        event: String,
        #[arg(default_value = "null")]
        payload: String,
    },
    /// Cancel a run: it runs the compensations its code registered (`wf.on_cancel`), then ends cancelled.
    Cancel { run: String },
    /// Resume a run that failed outside its own code (it crashed, or its replay was non-deterministic) from its
    /// journal; with `--version`, on that version of its component (also for a run that has not failed: its next
    /// resume runs there).
    Retry {
        run: String,
        #[arg(long, value_name = "N")]
        version: Option<u32>,
    },
}

fn segment(text: &str) -> String {
    edgefn_manifest::route::percent_encode(text, false)
}

/// A failed attempt, as the timeline shows it.
fn failed_attempt(attempt: &Value) -> String {
    format!(
        "step {} attempt {} failed: {} ({})",
        text(attempt, "step"),
        text(attempt, "attempt"),
        text(attempt, "error"),
        text(attempt, "status")
    )
}

fn parse_json(what: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text)
        .map_err(|error| anyhow::anyhow!("the {what} is not JSON: {error} (quote strings: '\"text\"')"))
}

pub(crate) fn run(args: WorkflowsArgs) -> anyhow::Result<()> {
    let admin = &args.admin;
    match args.command {
        WorkflowsCommand::List { state, limit } => {
            let found =
                admin.get_with("/v1/workflows/runs", &[("state", state), ("limit", Some(limit.to_string()))])?;
            answer(admin.json, &found, |found| {
                let mut table = Table::new(&["RUN", "WORKFLOW", ">VERSION", "STATE", "STARTED", "UPDATED", "DETAIL"]);
                for run in found["runs"].as_array().into_iter().flatten() {
                    let detail = match text(run, "state").as_str() {
                        "waiting" => format!("event {}", text(run, "waiting_for")),
                        "failed" | "cancelled" => short(&text(run, "error"), 60),
                        "done" => short(&text(run, "result"), 60),
                        _ => String::new(),
                    };
                    table.row(vec![
                        text(run, "run"),
                        text(run, "workflow"),
                        run["version"].as_u64().map(|v| v.to_string()).unwrap_or_default(),
                        text(run, "state"),
                        date(run["created_at"].as_i64().unwrap_or_default()),
                        date(run["updated_at"].as_i64().unwrap_or_default()),
                        detail,
                    ]);
                }
                table.print();
            })
        }
        WorkflowsCommand::Show { run } => {
            let found = admin.call("GET", &format!("/v1/workflows/runs/{}", segment(&run)), None)?;
            answer(admin.json, &found, |found| {
                let version =
                    found["version"].as_u64().map_or_else(|| "the live version".to_owned(), |v| format!("v{v}"));
                println!(
                    "run {} of {} on {version}: {}",
                    text(found, "run"),
                    text(found, "workflow"),
                    text(found, "state")
                );
                if let Some(parent) = found["parent"].as_str() {
                    println!("child of run {parent}");
                }
                println!("input: {}", found["input"]);
                let attempts = found["failed_attempts"].as_array().cloned().unwrap_or_default();
                for entry in found["journal"].as_array().into_iter().flatten() {
                    let at = date(entry["at"].as_i64().unwrap_or_default());
                    if entry["kind"] == "step" {
                        for attempt in attempts.iter().filter(|a| a["step"] == entry["name"]) {
                            let when = date(attempt["at"].as_i64().unwrap_or_default());
                            println!("  {when}  {}", failed_attempt(attempt));
                        }
                    }
                    println!("  {at}  {}", text(entry, "what"));
                }
                if let Some(retrying) = found["retrying"].as_object() {
                    for attempt in attempts.iter().filter(|a| Some(&a["step"]) == retrying.get("step")) {
                        let when = date(attempt["at"].as_i64().unwrap_or_default());
                        println!("  {when}  {}", failed_attempt(attempt));
                    }
                }
                let due = found["due_at"].as_i64().map(date).unwrap_or_default();
                match text(found, "state").as_str() {
                    "waiting" => println!("waits for event {} until {due}", text(found, "waiting_for")),
                    "sleeping" => println!("sleeps until {due}"),
                    "retrying" => {
                        println!("retries step {} at {due}", found["retrying"]["step"].as_str().unwrap_or(""))
                    }
                    "done" => println!("result: {}", found["result"]),
                    "failed" if found["retryable"] == json!(true) => {
                        println!(
                            "error: {} (outside its code: `edgefn workflows retry {run}` resumes it)",
                            text(found, "error")
                        )
                    }
                    "failed" | "cancelled" => println!("error: {}", text(found, "error")),
                    _ => println!("due {due}"),
                }
            })
        }
        WorkflowsCommand::Start { workflow, input, id } => {
            let body = json!({ "workflow": workflow, "input": parse_json("input", &input)?, "id": id });
            let started = admin.call("POST", "/v1/workflows/runs", Some(body))?;
            answer(admin.json, &started, |started| {
                let verb = if started["created"] == json!(true) { "started" } else { "already started" };
                println!("{verb} run {} of {}", text(started, "run"), text(started, "workflow"));
            })
        }
        WorkflowsCommand::Signal { run, event, payload } => {
            let path = format!("/v1/workflows/runs/{}/signals/{}", segment(&run), segment(&event));
            let sent = admin.call("POST", &path, Some(parse_json("payload", &payload)?))?;
            answer(admin.json, &sent, |sent| println!("event {event} to run {run}: {}", text(sent, "signal")))
        }
        WorkflowsCommand::Cancel { run } => {
            let cancelled = admin.call("POST", &format!("/v1/workflows/runs/{}/cancel", segment(&run)), None)?;
            answer(admin.json, &cancelled, |_| {
                println!("cancelling run {run}: its compensations run, then it ends cancelled")
            })
        }
        WorkflowsCommand::Retry { run, version } => {
            let path = format!("/v1/workflows/runs/{}/retry", segment(&run));
            let retried = admin.call("POST", &path, Some(json!({ "version": version })))?;
            answer(admin.json, &retried, |retried| println!("run {run}: {}", text(retried, "retry")))
        }
    }
}
