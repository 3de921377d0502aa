//! `edgefn nodes`: the members of a running host's cluster, with what each serves and how busy it is.

use super::admin_client::AdminArgs;
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub(crate) struct NodesArgs {
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) fn run(args: NodesArgs) -> anyhow::Result<()> {
    let response = args.admin.call("GET", "/v1/nodes", None)?;
    let now = crate::storage::now_ms();
    println!(
        "{:20} {:22} {:>7} {:>7} {:>10} {:>6}  COMPONENTS",
        "NODE", "HTTP", "RUNNING", "LOADED", "DELIVERIES", "SEEN"
    );
    for node in response.get("nodes").and_then(Value::as_array).into_iter().flatten() {
        let number = |key: &str| node.get(key).and_then(Value::as_u64).unwrap_or(0);
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
        println!(
            "{:20} {:22} {:>7} {:>7} {:>10} {:>5}s  {}",
            node.get("node").and_then(Value::as_str).unwrap_or_default(),
            node.get("http").and_then(Value::as_str).unwrap_or_default(),
            number("running"),
            number("loaded"),
            number("deliveries"),
            seen,
            components.join(", ")
        );
    }
    Ok(())
}
