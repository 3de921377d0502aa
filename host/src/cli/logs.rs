//! `edgefn logs`, `edgefn replay` and `edgefn usage`: read a running host's log (or follow it), run a kept failure
//! again, and what its functions used, with an estimated bill.

use super::admin_client::AdminArgs;
use super::output::Table;
use crate::storage::telemetry::{StoredLog, UsageRow};
use crate::telemetry::billing::{Prices, bills};
use anyhow::Context as _;
use serde_json::Value;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub(crate) struct LogsArgs {
    /// Only this function: `component/function`, a component, or a function name.
    function: Option<String>,
    /// Keep reading: print each new record as the host stores it, until interrupted.
    #[arg(long, short)]
    follow: bool,
    /// Only the records of this correlation id (a request's `x-request-id`, a message's, a cron run's).
    #[arg(long)]
    id: Option<String>,
    /// Only records from this long ago on: `30s`, `10m`, `2h`, `1d`.
    #[arg(long)]
    since: Option<String>,
    /// Only records this severe or more: `error`, `warn`, `info`, `debug`.
    #[arg(long)]
    level: Option<String>,
    /// How many records at most (the newest).
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let mut query = vec![
        ("function", args.function.clone()),
        ("id", args.id.clone()),
        ("since", args.since.clone()),
        ("level", args.level.clone()),
    ];
    if !args.follow {
        query.push(("limit", Some(args.limit.to_string())));
        let answer = args.admin.get_with("/v1/logs", &query)?;
        let logs: Vec<StoredLog> =
            serde_json::from_value(answer.get("logs").cloned().unwrap_or(Value::Null)).context("unexpected answer")?;
        for log in &logs {
            println!("{}", render(log, args.admin.json)?);
        }
        return Ok(());
    }
    let mut event = String::new();
    for line in args.admin.stream_lines("/v1/logs/follow", &query)? {
        let line = line.context("the host closed the log stream")?;
        if let Some(name) = line.strip_prefix("event:") {
            event = name.trim().to_owned();
        } else if let Some(data) = line.strip_prefix("data:") {
            let data = data.trim_start();
            match event.as_str() {
                "log" => {
                    let log: StoredLog = serde_json::from_str(data).context("unexpected record")?;
                    println!("{}", render(&log, args.admin.json)?);
                }
                "dropped" => eprintln!("edgefn: this follower fell behind and missed records: {data}"),
                _ => {}
            }
        }
    }
    Ok(())
}

/// One record as a line: `time level function vN trigger id message`, or its JSON.
pub(crate) fn render(log: &StoredLog, json: bool) -> anyhow::Result<String> {
    if json {
        return Ok(serde_json::to_string(log)?);
    }
    let record = &log.record;
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(record.at)
        .map_or_else(|| record.at.to_string(), |at| at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
    let function = match (&record.function, record.version) {
        (Some(function), Some(version)) => format!("{function} v{version}"),
        (Some(function), None) => function.clone(),
        _ => "host".to_owned(),
    };
    Ok(format!(
        "{at} {:<5} {function} {} {} {}",
        record.level.as_str().to_uppercase(),
        record.trigger.as_deref().unwrap_or("-"),
        record.correlation_id.as_deref().unwrap_or("-"),
        record.message
    ))
}

#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    /// The failure: its number (`failure #17` in the log), or a correlation id (its newest failure).
    id: String,
    /// Run it on this version (deployed or not) instead of the live one: check a fix before it goes live.
    #[arg(long)]
    version: Option<u32>,
    #[command(flatten)]
    admin: AdminArgs,
}

/// Prints the replay's outcome and log; fails (exit 1) when the replay failed too.
pub(crate) fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let body = match args.version {
        Some(version) => serde_json::json!({ "version": version }),
        None => serde_json::json!({}),
    };
    let path = format!("/v1/failures/{}/replay", args.id.replace('/', "%2F"));
    let answer = args.admin.call("POST", &path, Some(body))?;
    let outcome = &answer["outcome"];
    if args.admin.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        let failure = &answer["failure"];
        println!(
            "failure #{} of {} v{} ({}): {}",
            failure["id"],
            failure["function"].as_str().unwrap_or("?"),
            failure["version"],
            failure["trigger"].as_str().unwrap_or("?"),
            failure["error"].as_str().unwrap_or("")
        );
        let status = outcome["status"].as_u64().map(|s| format!(" {s}")).unwrap_or_default();
        let verdict = if outcome["ok"] == true { "ok" } else { "failed" };
        println!(
            "replayed on v{} as {}: {verdict}{status}",
            outcome["version"],
            outcome["correlation_id"].as_str().unwrap_or("?")
        );
        if let Some(output) = outcome["output"].as_str().filter(|o| !o.is_empty()) {
            println!("{output}");
        }
        let logs: Vec<StoredLog> = serde_json::from_value(answer["logs"].clone()).context("unexpected answer")?;
        for log in &logs {
            println!("{}", render(log, false)?);
        }
    }
    if outcome["ok"] != true {
        anyhow::bail!("the replay failed too");
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(crate) struct UsageArgs {
    /// Only this function: `component/function`, a component, or a function name.
    function: Option<String>,
    /// From this long ago on: `1h`, `24h`, `30d`.
    #[arg(long, default_value = "24h")]
    since: String,
    /// A price table (TOML) instead of the default, Lambda's x86 prices: `per_million_requests`, `per_gb_second`,
    /// `per_million_cpu_ms` (e.g. 0.02 for Cloudflare Workers' CPU time).
    #[arg(long)]
    prices: Option<PathBuf>,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) fn usage(args: UsageArgs) -> anyhow::Result<()> {
    let prices = match &args.prices {
        None => Prices::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("failed to read the price table {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("invalid price table {}", path.display()))?
        }
    };
    let query = [("function", args.function.clone()), ("since", Some(args.since.clone()))];
    let answer = args.admin.get_with("/v1/usage", &query)?;
    let rows: Vec<UsageRow> =
        serde_json::from_value(answer.get("usage").cloned().unwrap_or(Value::Null)).context("unexpected answer")?;
    let (bills, total) = bills(&rows, &prices);
    let bill_json = serde_json::json!({ "since": args.since, "prices": prices, "functions": bills, "total": total });
    if args.admin.json {
        println!("{}", serde_json::to_string_pretty(&bill_json)?);
        return Ok(());
    }
    let mut table = Table::new(&[
        "FUNCTION",
        ">REQUESTS",
        ">4XX",
        ">ERRORS",
        ">THROTTLED",
        ">UNAUTHORIZED",
        ">COLD",
        ">GB-S",
        ">CPU MS",
        ">EST. USD",
    ]);
    for bill in bills.iter().chain(std::iter::once(&total)) {
        table.row(vec![
            bill.function.clone(),
            bill.requests.to_string(),
            bill.client_errors.to_string(),
            bill.errors.to_string(),
            bill.throttled.to_string(),
            bill.unauthorized.to_string(),
            bill.cold_starts.to_string(),
            format!("{:.6}", bill.gb_seconds),
            format!("{:.3}", bill.guest_cpu_ms),
            format!("{:.8}", bill.cost_usd),
        ]);
    }
    table.print();
    println!(
        "prices: ${} per million requests, ${} per GB-s, ${} per million CPU ms",
        prices.per_million_requests, prices.per_gb_second, prices.per_million_cpu_ms
    );
    Ok(())
}
