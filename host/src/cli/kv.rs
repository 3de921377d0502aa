//! `edgefn kv get|set|delete|list STORE ...`: a running host's key-value stores, from the command line.

use super::admin_client::AdminArgs;
use super::output::{answer, text};
use anyhow::Context as _;
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub(crate) struct KvArgs {
    #[command(subcommand)]
    command: KvCommand,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Debug, clap::Subcommand)]
enum KvCommand {
    /// Print a key's value (as text when it is UTF-8) and its version.
    Get { store: String, key: String },
    /// Set a key: `edgefn kv set default greeting hello [--ttl-ms 60000]`.
    Set {
        store: String,
        key: String,
        value: String,
        /// Expire the key after this many milliseconds.
        #[arg(long)]
        ttl_ms: Option<u64>,
    },
    /// Delete a key.
    Delete { store: String, key: String },
    /// List keys, in order: `edgefn kv list default --prefix user:`.
    List {
        store: String,
        #[arg(long, default_value = "")]
        prefix: String,
        /// The `cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

/// A path segment, percent-encoded: keys may hold `/`, spaces and anything else.
fn segment(text: &str) -> String {
    edgefn_manifest::route::percent_encode(text, false)
}

pub(crate) fn run(args: KvArgs) -> anyhow::Result<()> {
    let admin = &args.admin;
    match args.command {
        KvCommand::Get { store, key } => {
            let found = admin.call("GET", &format!("/v1/kv/{}/keys/{}", segment(&store), segment(&key)), None)?;
            answer(admin.json, &found, |found| {
                match found.get("value").and_then(Value::as_str) {
                    Some(text) => println!("{text}"),
                    None => println!(
                        "(binary, base64) {}",
                        found.get("value_base64").and_then(Value::as_str).unwrap_or_default()
                    ),
                }
                eprintln!("version {}", found.get("version").cloned().unwrap_or(Value::Null));
            })
        }
        KvCommand::Set { store, key, value, ttl_ms } => {
            let ttl = ttl_ms.map(|ms| format!("?ttl_ms={ms}")).unwrap_or_default();
            let path = format!("/v1/kv/{}/keys/{}{ttl}", segment(&store), segment(&key));
            let set = admin.call_raw("PUT", &path, value.into_bytes()).context("set failed")?;
            answer(admin.json, &set, |set| println!("set {store} {key} (version {})", text(set, "version")))
        }
        KvCommand::Delete { store, key } => {
            let deleted = admin.call("DELETE", &format!("/v1/kv/{}/keys/{}", segment(&store), segment(&key)), None)?;
            answer(admin.json, &deleted, |_| println!("deleted {store} {key}"))
        }
        KvCommand::List { store, prefix, cursor, limit } => {
            let mut path = format!("/v1/kv/{}/keys?limit={limit}&prefix={}", segment(&store), segment(&prefix));
            if let Some(cursor) = cursor {
                path.push_str(&format!("&cursor={}", segment(&cursor)));
            }
            let page = admin.call("GET", &path, None)?;
            answer(admin.json, &page, |page| {
                for key in page.get("keys").and_then(Value::as_array).into_iter().flatten() {
                    println!("{}", key.as_str().unwrap_or_default());
                }
                if let Some(cursor) = page.get("cursor").and_then(Value::as_str) {
                    eprintln!("more: --cursor {cursor}");
                }
            })
        }
    }
}
