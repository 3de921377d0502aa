//! `edgefn secrets rotate-key`: seals every stored secret under a new host key, offline (stop the host first).
//!
//! The new key is written to `<data>/secrets.key.new` first; then every version's configuration is re-sealed in one
//! transaction; then the old key becomes `secrets.key.old` and the new one `secrets.key`. Interrupted anywhere, a
//! second run finishes the job: a value opens under whichever of the two keys sealed it (the key id says which).

use crate::deployments::VersionConfig;
use crate::storage::Database;
use crate::storage::deployments::DeploymentDb;
use crate::storage::sealing::{KEY_ENV, KEY_FILE, SecretsKey, key_path};
use anyhow::{Context as _, bail};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub(crate) struct SecretsArgs {
    #[command(subcommand)]
    command: SecretsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SecretsCommand {
    /// Seal every stored secret under a new key (`secrets.key`); the old one is kept as `secrets.key.old`.
    RotateKey {
        /// The host's data directory (the host must be stopped).
        #[arg(long, default_value = "./.edgefn")]
        data: PathBuf,
    },
}

pub(crate) fn run(args: SecretsArgs) -> anyhow::Result<()> {
    let SecretsCommand::RotateKey { data } = args.command;
    if std::env::var(KEY_ENV).is_ok_and(|key| !key.trim().is_empty()) {
        bail!(
            "the host key comes from {KEY_ENV}, not from {}: rotate-key rotates the key file only; unset {KEY_ENV} \
             to move to a key file, or keep the environment's key",
            key_path(&data).display()
        );
    }
    let current_path = key_path(&data);
    if !current_path.is_file() || !data.join(crate::storage::DB_FILE).is_file() {
        bail!("no host key or database in {}: nothing was sealed there yet", data.display());
    }
    let current = SecretsKey::load_or_create(&data)?;
    let pending_path = data.join(format!("{KEY_FILE}.new"));
    let (pending_text, _) = crate::storage::load_or_create_secret(&pending_path)?;
    let pending = SecretsKey::from_text(&pending_text, pending_path.display().to_string());
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let resealed = tokio.block_on(async {
        let db = DeploymentDb::new(Database::open(&data)?);
        let mut configs = Vec::new();
        for row in db.all_versions().await? {
            let what = format!("{} v{}", row.component, row.version);
            let config = VersionConfig::from_stored_json(&row.config, &current)
                .or_else(|_| VersionConfig::from_stored_json(&row.config, &pending))
                .map_err(|error| anyhow::anyhow!("{what}: {error}"))?;
            configs.push((row.component, row.version, config.to_stored_json(&pending)));
        }
        let count = configs.len();
        db.replace_configs(configs).await?;
        anyhow::Ok(count)
    })?;
    let old_path = data.join(format!("{KEY_FILE}.old"));
    std::fs::rename(&current_path, &old_path)
        .with_context(|| format!("failed to keep the old key as {}", old_path.display()))?;
    std::fs::rename(&pending_path, &current_path)
        .with_context(|| format!("failed to move the new key to {}", current_path.display()))?;
    println!(
        "re-sealed the secrets of {resealed} stored version(s) under key {} (was {}); the old key is in {} until you \
         delete it",
        pending.id(),
        current.id(),
        old_path.display()
    );
    Ok(())
}
