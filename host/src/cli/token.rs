//! `edgefn token mint`: sign a token an authorizer of the host config accepts, for local testing.

use crate::auth::{Authorizers, Signer, Verdict, standard_claims};
use crate::config::HostConfig;
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Sign a token for `--authorizer` of the host config: with its HS256 secret, or with `--key`, a private key
    /// whose public half is in its JWKS file. Prints the token.
    Mint(MintArgs),
}

#[derive(Debug, Args)]
struct MintArgs {
    /// The host config that defines the authorizer.
    #[arg(long, default_value = "edgefn.toml")]
    config: PathBuf,
    /// The authorizer (`[authorizers.NAME]`) the token is for: its issuer and first audience go in the token.
    #[arg(long)]
    authorizer: String,
    /// The subject (`sub`).
    #[arg(long)]
    sub: String,
    /// A scope to grant; repeat for more.
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// How long the token is valid: `90s`, `15m`, `1h`, `7d`.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// A PEM private key (RSA, EC P-256 or Ed25519) to sign with, instead of the authorizer's HS256 secret.
    #[arg(long)]
    key: Option<PathBuf>,
    /// The algorithm, with `--key` (default: RS256, ES256 or EdDSA, by key type).
    #[arg(long)]
    alg: Option<String>,
    /// The `kid` header: the key's id in the JWKS (with `--key`).
    #[arg(long)]
    kid: Option<String>,
}

pub(crate) fn run(args: TokenArgs) -> anyhow::Result<()> {
    let TokenCommand::Mint(args) = args.command;
    let config = HostConfig::load(&args.config)?;
    let Some(authorizer_config) = config.authorizers.get(&args.authorizer) else {
        let known: Vec<&str> = config.authorizers.keys().map(String::as_str).collect();
        bail!(
            "{} defines no authorizer `{}` (it defines: {})",
            args.config.display(),
            args.authorizer,
            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
        );
    };
    // Load it as the host would: a token for an authorizer the host refuses would be no use.
    let one = std::iter::once((args.authorizer.clone(), authorizer_config.clone())).collect();
    let authorizers = Authorizers::from_config(&one)?;
    let authorizer = authorizers.get(&args.authorizer).context("the authorizer just loaded")?;
    let signer = match &args.key {
        Some(path) => {
            let algorithm = match &args.alg {
                Some(name) => Some(
                    name.parse::<jsonwebtoken::Algorithm>()
                        .map_err(|_| anyhow::anyhow!("unknown algorithm `{name}`"))?,
                ),
                None => None,
            };
            Signer::from_pem_file(path, algorithm, args.kid.clone()).map_err(anyhow::Error::msg)?
        }
        None => match authorizer.hmac_secret()? {
            Some(secret) => Signer::hmac(secret.as_bytes(), args.kid.clone()),
            None => bail!(
                "authorizer `{}` verifies with a JWKS file only: pass the private key with `--key FILE --kid KID`",
                args.authorizer
            ),
        },
    };
    let claims = standard_claims(authorizer.issuer(), authorizer.audience(), &args.sub, &args.scopes, args.ttl);
    let token = signer.sign(&claims).map_err(anyhow::Error::msg)?;
    // Check it the way the host will, so a key that does not match the JWKS is caught here.
    if let Verdict::Unauthorized(reason) = authorizer.check(Some(&format!("Bearer {token}")), &[]) {
        bail!("authorizer `{}` would refuse this token: {reason}", args.authorizer);
    }
    println!("{token}");
    Ok(())
}
