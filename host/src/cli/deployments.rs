//! `edgefn deployments`: what the data dir's database records, read offline (the host need not run): every
//! component's versions and which one is live.

use crate::storage::Database;
use crate::storage::deployments::DeploymentDb;
use edgefn_manifest::record::FunctionRecord;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub(crate) struct DeploymentsArgs {
    /// The host's data directory.
    #[arg(long, default_value = "./.edgefn")]
    data: PathBuf,
}

pub(crate) fn run(args: DeploymentsArgs) -> anyhow::Result<()> {
    if !args.data.join(crate::storage::DB_FILE).is_file() {
        anyhow::bail!("no edgefn database in {}: nothing was deployed there yet", args.data.display());
    }
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    tokio.block_on(async {
        let db = DeploymentDb::new(Database::open(&args.data)?);
        let live: std::collections::HashMap<String, _> = db.live().await?.into_iter().collect();
        for latest in db.latest_versions().await? {
            for version in db.versions(&latest.component).await? {
                let state = live.get(&version.component).map_or("", |live| {
                    if live.version == version.version {
                        "live"
                    } else if live.canary.is_some_and(|(canary, _)| canary == version.version) {
                        "canary"
                    } else {
                        ""
                    }
                });
                println!(
                    "{} v{} {state} sha256 {} from {}",
                    version.component, version.version, version.hash, version.source
                );
                let functions: Vec<FunctionRecord> = serde_json::from_str(&version.functions).unwrap_or_default();
                for function in functions {
                    println!("  {}  {}", function.name, function.trigger);
                }
            }
        }
        Ok(())
    })
}
