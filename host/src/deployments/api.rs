//! What callers of [`super::Deployments`] hand in and get back: the request, the outcomes, and why a change was
//! refused.

use crate::config::ComponentConfig;
use crate::live::{LiveSetError, Mount};
use crate::storage::StorageError;
use edgefn_manifest::record::FunctionRecord;

/// Why a deploy, rollback, promote or undeploy was refused. Whatever was live stays live.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("invalid component name `{0}`: use 1 to 64 letters, digits, `-` and `_`, starting with a letter or digit")]
    InvalidName(String),
    /// Not WebAssembly, a core module, or a manifest that does not decode or check out.
    #[error("{0}")]
    NotAComponent(String),
    #[error(
        "it has no edgefn manifest (no #[function] in it): to serve a plain wasi:http component, mount it at a \
         route (`--mount /route`)"
    )]
    NoManifest,
    #[error("invalid mount route `{route}`: {reason}")]
    InvalidMount { route: String, reason: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Settings(String),
    /// A protected route names an authorizer the host's config does not define: refused, never served open.
    #[error(
        "function `{function}` of `{component}` is protected by authorizer `{authorizer}`, which this host does not \
         have (configured: {known}); add `[authorizers.{authorizer}]` to the host config"
    )]
    UnknownAuthorizer { component: String, function: String, authorizer: String, known: String },
    #[error("canary percent must be between 1 and 99, not {0}")]
    CanaryPercent(u8),
    /// The component's init failed (the message says how, and what it printed).
    #[error("{0}")]
    Init(String),
    #[error("{0}")]
    Compile(String),
    /// The host cannot link it (an import it does not provide) or it exports no `wasi:http/incoming-handler`.
    #[error("{0}")]
    Link(String),
    #[error(transparent)]
    Conflict(#[from] LiveSetError),
    #[error("no component `{0}` is deployed")]
    NotLive(String),
    #[error("component `{0}` has never been deployed")]
    UnknownComponent(String),
    #[error("component `{component}` has no version {version}")]
    NoSuchVersion { component: String, version: u32 },
    #[error("component `{component}` has no version before {version} to roll back to")]
    NothingToRollBackTo { component: String, version: u32 },
    #[error("component `{0}` has no canary to promote")]
    NoCanary(String),
    #[error("version {version} of `{component}` cannot be loaded: {reason}")]
    Restore { component: String, version: u32, reason: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A file of the deploy (the component, its compiled artifact) could not be written for want of space; the
    /// partial file was removed and whatever was live stays live.
    #[error("the disk holding {} is full: the deploy was not stored (free space there and deploy again)", .path.display())]
    DiskFull { path: std::path::PathBuf },
    /// The static files could not be taken: the reason names the file or the limit.
    #[error("its static files were refused: {0}")]
    Assets(String),
    #[error("{0}")]
    Io(String),
}

/// What to deploy.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    /// The component's name: crate name or file stem by default.
    pub name: String,
    pub wasm: Vec<u8>,
    /// Where it came from, for the record: a path, or `upload`.
    pub source: String,
    pub deployed_by: String,
    /// Settings over the host config's `[components.NAME]`.
    pub overrides: ComponentConfig,
    /// Serve a plain wasi:http component under a route.
    pub mount: Option<Mount>,
    /// Give the new version this share of traffic, next to the live one, instead of all of it.
    pub canary_percent: Option<u8>,
    /// Its static files, as a bundle (`crate::assets::bundle`); without one, the folder of the host config's
    /// `[components.NAME.assets] dir`, if it names one.
    pub assets: Option<Vec<u8>>,
}

/// What a deploy did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeployOutcome {
    pub component: String,
    pub version: u32,
    pub hash: String,
    pub config_hash: String,
    /// No new version: the latest one already had this component and configuration.
    pub unchanged: bool,
    pub canary_percent: Option<u8>,
    /// Whether init ran or anything compiled (false: a verified cached artifact was reused).
    pub compiled: bool,
    /// Snapshot and compile time.
    pub compile_ms: u64,
    /// From the end of compiling to the new version taking requests.
    pub switch_ms: f64,
    pub functions: Vec<FunctionRecord>,
}

/// What a rollback, promote or undeploy left live.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SwitchOutcome {
    pub component: String,
    /// The live version now (none after an undeploy).
    pub version: Option<u32>,
    pub canary: Option<(u32, u8)>,
    pub switch_ms: f64,
}

/// One version, as `edgefn versions` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VersionInfo {
    pub version: u32,
    pub hash: String,
    pub config_hash: String,
    /// `live`, `canary` or `""`.
    pub status: String,
    pub canary_percent: Option<u8>,
    pub deployed_at: i64,
    pub deployed_by: String,
    pub source: String,
    pub functions: Vec<FunctionRecord>,
    /// The configuration, secret values replaced.
    pub config: serde_json::Value,
}
