//! `edgefn invoke` and `edgefn runs`: call a function of a running host, fire a cron function, read its history.

use super::admin_client::{AdminArgs, parse_json, print};
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
