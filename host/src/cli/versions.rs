//! `edgefn components`, `versions`, `rollback`, `promote`, `undeploy`: what is live on a running host, and changing
//! it without a deploy.

use super::admin_client::AdminArgs;
use super::output::{Table, answer, date, text};
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub(crate) struct ComponentArgs {
    /// The component.
    name: String,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RollbackArgs {
    /// The component.
    name: String,
    /// The version to go back to (default: end a canary, or the version before the live one).
    #[arg(long, value_name = "N")]
    to: Option<u32>,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ComponentsArgs {
    #[command(flatten)]
    admin: AdminArgs,
}

fn triggers(functions: Option<&Value>) -> String {
    let records: Vec<edgefn_manifest::record::FunctionRecord> =
        functions.and_then(|f| serde_json::from_value(f.clone()).ok()).unwrap_or_default();
    records.iter().map(|f| format!("{}: {}", f.name, f.trigger)).collect::<Vec<_>>().join("; ")
}

pub(crate) fn versions(args: ComponentArgs) -> anyhow::Result<()> {
    let response = args.admin.call("GET", &format!("/v1/components/{}/versions", args.name), None)?;
    answer(args.admin.json, &response, |response| {
        let mut table = Table::new(&[">VERSION", "STATUS", "DEPLOYED (UTC)", "BY", "SHA256", "TRIGGERS"]);
        for version in response.get("versions").and_then(Value::as_array).into_iter().flatten() {
            let status = match (text(version, "status").as_str(), version.get("canary_percent").and_then(Value::as_u64))
            {
                ("canary", Some(percent)) => format!("canary {percent}%"),
                (status, _) => status.to_owned(),
            };
            let hash = text(version, "hash");
            table.row(vec![
                text(version, "version"),
                status,
                date(version.get("deployed_at").and_then(Value::as_i64).unwrap_or_default()),
                text(version, "deployed_by"),
                hash[..hash.len().min(12)].to_owned(),
                triggers(version.get("functions")),
            ]);
        }
        table.print();
    })
}

fn print_switch(json: bool, what: &str, outcome: &Value) -> anyhow::Result<()> {
    answer(json, outcome, |outcome| print_switch_summary(what, outcome))
}

fn print_switch_summary(what: &str, outcome: &Value) {
    let name = text(outcome, "component");
    match outcome.get("version").and_then(Value::as_u64) {
        Some(version) => {
            let switch = super::deploy::ms(outcome.get("switch_ms").unwrap_or(&Value::Null));
            println!("{what} {name}: version {version} is live ({switch} ms)")
        }
        None => println!("{what} {name}: nothing of it is live; its versions and queues are kept"),
    }
}

pub(crate) fn rollback(args: RollbackArgs) -> anyhow::Result<()> {
    let body = json!({ "to": args.to });
    let outcome = args.admin.call("POST", &format!("/v1/components/{}/rollback", args.name), Some(body))?;
    print_switch(args.admin.json, "rolled back", &outcome)
}

pub(crate) fn promote(args: ComponentArgs) -> anyhow::Result<()> {
    let outcome = args.admin.call("POST", &format!("/v1/components/{}/promote", args.name), Some(json!({})))?;
    print_switch(args.admin.json, "promoted", &outcome)
}

#[derive(Debug, clap::Args)]
pub(crate) struct UndeployArgs {
    /// The component.
    name: String,
    /// Undeploy even while workflow runs of the component have not finished: they are cancelled.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) fn undeploy(args: UndeployArgs) -> anyhow::Result<()> {
    let path = format!("/v1/components/{}{}", args.name, if args.force { "?force=true" } else { "" });
    let outcome = args.admin.call("DELETE", &path, None)?;
    if let Some(cancelled) = outcome["cancelled_workflow_runs"].as_u64().filter(|n| *n > 0)
        && !args.admin.json
    {
        println!("cancelled {cancelled} workflow run(s) of {}", args.name);
    }
    print_switch(args.admin.json, "undeployed", &outcome)
}

pub(crate) fn components(args: ComponentsArgs) -> anyhow::Result<()> {
    let response = args.admin.call("GET", "/v1/components", None)?;
    answer(args.admin.json, &response, |response| {
        let mut table = Table::new(&["COMPONENT", ">VERSION", "CANARY", "TRIGGERS"]);
        for component in response.get("components").and_then(Value::as_array).into_iter().flatten() {
            let canary = component
                .get("canary")
                .filter(|c| !c.is_null())
                .map(|c| format!("v{} at {}%", text(c, "version"), text(c, "percent")))
                .unwrap_or_default();
            table.row(vec![
                text(component, "name"),
                text(component, "version"),
                canary,
                triggers(component.get("functions")),
            ]);
        }
        table.print();
    })
}
