//! `edgefn objects ls|get|put|rm|usage`: a running host's object buckets, from the command line. Objects stream
//! both ways, so any size goes through in bounded memory.

use super::admin_client::AdminArgs;
use super::output::{answer, text};
use anyhow::Context as _;
use serde_json::Value;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub(crate) struct ObjectsArgs {
    #[command(subcommand)]
    command: ObjectsCommand,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Debug, clap::Subcommand)]
enum ObjectsCommand {
    /// List a bucket's objects, in key order: `edgefn objects ls photos --prefix uploads/`.
    Ls {
        bucket: String,
        #[arg(long, default_value = "")]
        prefix: String,
        /// The `cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Write an object's bytes to a file (`-o`) or to stdout.
    Get {
        bucket: String,
        key: String,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Store a file (or stdin, `-`) as an object: `edgefn objects put photos cat.png ./cat.png --type image/png`.
    Put {
        bucket: String,
        key: String,
        file: PathBuf,
        /// Its content type (default: application/octet-stream).
        #[arg(long = "type", default_value = "")]
        content_type: String,
    },
    /// Delete an object.
    Rm { bucket: String, key: String },
    /// Objects and bytes of every bucket.
    Usage,
}

/// A key as a URL path: each character percent-encoded but letters, digits, `-._~` and `/`.
fn key_path(key: &str) -> String {
    edgefn_manifest::route::percent_encode(key, true)
}

pub(crate) fn run(args: ObjectsArgs) -> anyhow::Result<()> {
    let admin = &args.admin;
    match args.command {
        ObjectsCommand::Ls { bucket, prefix, cursor, limit } => {
            let query = [("prefix", Some(prefix)), ("cursor", cursor), ("limit", Some(limit.to_string()))];
            let page = admin.get_with(&format!("/v1/objects/{bucket}"), &query)?;
            answer(admin.json, &page, |page| {
                for object in page.get("objects").and_then(Value::as_array).into_iter().flatten() {
                    println!(
                        "{:>12}  {}  {:24}  {}",
                        text(object, "size"),
                        &text(object, "etag").chars().take(12).collect::<String>(),
                        text(object, "content_type"),
                        text(object, "key")
                    );
                }
                if let Some(cursor) = page.get("cursor").and_then(Value::as_str) {
                    eprintln!("more: --cursor {cursor}");
                }
            })
        }
        ObjectsCommand::Get { bucket, key, output } => {
            let mut reader = admin.get_reader(&format!("/v1/objects/{bucket}/{}", key_path(&key)))?;
            let written = match &output {
                Some(path) => {
                    let mut file =
                        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
                    std::io::copy(&mut reader, &mut file)?
                }
                None => std::io::copy(&mut reader, &mut std::io::stdout().lock())?,
            };
            if let Some(path) = output {
                eprintln!("wrote {written} bytes to {}", path.display());
            }
            Ok(())
        }
        ObjectsCommand::Put { bucket, key, file, content_type } => {
            let path = format!("/v1/objects/{bucket}/{}", key_path(&key));
            let stored = if file.as_os_str() == "-" {
                admin.call_reader("PUT", &path, &content_type, std::io::stdin().lock())?
            } else {
                let reader = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
                admin.call_reader("PUT", &path, &content_type, reader)?
            };
            answer(admin.json, &stored, |stored| {
                println!("stored {bucket}/{key}: {} bytes, etag {}", text(stored, "size"), text(stored, "etag"))
            })
        }
        ObjectsCommand::Rm { bucket, key } => {
            let deleted = admin.call("DELETE", &format!("/v1/objects/{bucket}/{}", key_path(&key)), None)?;
            answer(admin.json, &deleted, |deleted| match deleted.get("deleted").and_then(Value::as_bool) {
                Some(true) => println!("deleted {bucket}/{key}"),
                _ => println!("{bucket}/{key} did not exist"),
            })
        }
        ObjectsCommand::Usage => {
            let usage = admin.call("GET", "/v1/objects", None)?;
            answer(admin.json, &usage, |usage| {
                for bucket in usage.get("buckets").and_then(Value::as_array).into_iter().flatten() {
                    println!(
                        "{:24} {:>10} objects {:>14} bytes",
                        text(bucket, "bucket"),
                        text(bucket, "objects"),
                        text(bucket, "bytes")
                    );
                }
            })
        }
    }
}
