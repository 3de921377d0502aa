//! `edgefn deployments`: what the database says is deployed.

use crate::storage::Db;
use edgefn_manifest::record::FunctionRecord;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub(crate) struct DeploymentsArgs {
    /// The host's data directory.
    #[arg(long, default_value = "./.edgefn")]
    data: PathBuf,
}

pub(crate) fn run(args: DeploymentsArgs) -> anyhow::Result<()> {
    if !args.data.join("edgefn.db").is_file() {
        anyhow::bail!("no edgefn database in {}: nothing was deployed there yet", args.data.display());
    }
    let db = Db::open(&args.data)?;
    for deployment in db.deployments()? {
        println!("{} sha256 {} from {}", deployment.name, deployment.hash, deployment.source);
        let functions: Vec<FunctionRecord> = serde_json::from_str(&deployment.triggers).unwrap_or_default();
        for function in functions {
            println!("  {}  {}", function.name, function.trigger);
        }
    }
    Ok(())
}
