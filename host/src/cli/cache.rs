//! `edgefn cache stats|purge`: a running host's HTTP response cache.

use super::admin_client::AdminArgs;
use super::output::{answer, text};
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub(crate) struct CacheArgs {
    #[command(subcommand)]
    command: CacheCommand,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Debug, clap::Subcommand)]
enum CacheCommand {
    /// What the cache holds (entries, bytes) and how it answered (hits, misses, stale).
    Stats,
    /// Drop a component's cached responses: all of them, those of one path (`/products/*` for a prefix), or those
    /// tagged with `Cache-Tag: TAG`.
    Purge {
        component: String,
        #[arg(long, conflicts_with = "tag")]
        path: Option<String>,
        #[arg(long)]
        tag: Option<String>,
    },
}

pub(crate) fn run(args: CacheArgs) -> anyhow::Result<()> {
    let admin = &args.admin;
    match args.command {
        CacheCommand::Stats => {
            let found = admin.call("GET", "/v1/cache", None)?;
            answer(admin.json, &found, |found| {
                let stats = found.get("stats").cloned().unwrap_or(Value::Null);
                println!(
                    "{} entries, {} bytes; {} hits, {} misses, {} stale; {} stored, {} purged",
                    text(&stats, "entries"),
                    text(&stats, "bytes"),
                    text(&stats, "hits"),
                    text(&stats, "misses"),
                    text(&stats, "stale"),
                    text(&stats, "stored"),
                    text(&stats, "purged"),
                );
            })
        }
        CacheCommand::Purge { component, path, tag } => {
            let body = json!({ "component": component, "path": path, "tag": tag });
            let purged = admin.call("POST", "/v1/cache/purge", Some(body))?;
            answer(admin.json, &purged, |purged| println!("purged {} entries of {component}", text(purged, "purged")))
        }
    }
}
