//! `edgefn nodes`: the members of a running host's cluster, with what each serves and how busy it is.

use super::admin_client::AdminArgs;
use super::output::{Table, answer, text};
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub(crate) struct NodesArgs {
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) fn run(args: NodesArgs) -> anyhow::Result<()> {
    let response = args.admin.call("GET", "/v1/nodes", None)?;
    let now = crate::storage::now_ms();
    answer(args.admin.json, &response, |response| {
        let mut table = Table::new(&["NODE", "HTTP", ">RUNNING", ">LOADED", ">DELIVERIES", ">SEEN", "COMPONENTS"]);
        for node in response.get("nodes").and_then(Value::as_array).into_iter().flatten() {
            let number = |key: &str| node.get(key).and_then(Value::as_u64).unwrap_or(0).to_string();
            let components: Vec<String> = node
                .get("components")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(name, live)| {
                    let version = live.get("version").and_then(Value::as_u64).unwrap_or(0);
                    let hash = live.get("hash").and_then(Value::as_str).unwrap_or_default();
                    let canary = match live.get("canary").and_then(Value::as_array) {
                        Some(canary) => format!(" + v{} at {}%", canary[0], canary[1]),
                        None => String::new(),
                    };
                    format!("{name} v{version} ({}){canary}", hash.get(..12).unwrap_or(hash))
                })
                .collect();
            let seen = node.get("seen_at").and_then(Value::as_i64).map(|at| (now - at).max(0) / 1000).unwrap_or(0);
            table.row(vec![
                text(node, "node"),
                text(node, "http"),
                number("running"),
                number("loaded"),
                number("deliveries"),
                format!("{seen}s"),
                components.join(", "),
            ]);
        }
        table.print();
    })
}
