//! `edgefn invoke` and `edgefn runs`: call a function of a running host, fire a cron function, read its history.

use super::admin_client::{AdminArgs, parse_json};
use super::output::{Table, answer, date, short, text};
use anyhow::bail;
use serde_json::Value;

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
        answer(args.admin.json, &run, |run| {
            let error = run["error"].as_str().map(|e| format!(": {e}")).unwrap_or_default();
            println!(
                "run {} of {}: {} (attempt {}, {}){error}",
                text(run, "id"),
                text(run, "function"),
                text(run, "outcome"),
                text(run, "attempt"),
                text(run, "reason")
            );
        })?;
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
    // What the function answered is JSON already: that is the readable form too (`--json` adds the correlation id).
    answer(args.admin.json, &response, |response| {
        let result = response.get("result").unwrap_or(&Value::Null);
        println!("{}", serde_json::to_string_pretty(result).unwrap_or_default());
    })
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
    let runs = args.admin.call("GET", &format!("/v1/functions/{function}/runs?limit={}", args.limit), None)?;
    answer(args.admin.json, &runs, |runs| {
        let mut table = Table::new(&["SCHEDULED (UTC)", "OUTCOME", ">ATTEMPT", "REASON", ">LATE MS", "NODE", "ERROR"]);
        for run in runs["runs"].as_array().into_iter().flatten() {
            let late_ms = run["delay_us"].as_i64().unwrap_or_default() as f64 / 1000.0;
            table.row(vec![
                date(run["scheduled_at"].as_i64().unwrap_or_default()),
                text(run, "outcome"),
                text(run, "attempt"),
                text(run, "reason"),
                format!("{late_ms:.1}"),
                text(run, "node"),
                short(&text(run, "error"), 100),
            ]);
        }
        table.print();
    })
}
