//! `edgefn deploy PATH|FILE.wasm`: build a crate locally (cargo's progress shown) or take a component, upload it to
//! a running host, which validates, snapshots, compiles and records it as a new version, then makes it live.

use super::admin_client::AdminArgs;
use super::build;
use crate::admin::DeployBody;
use crate::config::{ComponentConfig, FunctionSettings, ReuseSettings};
use crate::live::Mount;
use anyhow::Context as _;
use base64::Engine as _;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub(crate) struct DeployArgs {
    /// A function crate directory (built for wasm32-wasip2 with cargo) or a .wasm component.
    path: PathBuf,
    /// The component's name (default: the crate name, or the file's stem).
    #[arg(long)]
    name: Option<String>,
    /// Send only this share (1-99 %) of the component's traffic, and of its queue deliveries and cron runs, to the
    /// new version; `edgefn promote` or `edgefn rollback` ends the canary.
    #[arg(long, value_name = "PERCENT")]
    canary: Option<u8>,
    /// Serve a plain wasi:http component (no edgefn manifest) at this route and everything below it.
    #[arg(long, value_name = "ROUTE")]
    mount: Option<String>,
    /// A folder of static files to deploy with it, served by the host (default: the crate's
    /// `[package.metadata.edgefn] assets`).
    #[arg(long, value_name = "DIR")]
    assets: Option<PathBuf>,
    /// With --mount: the component sees paths without the route prefix (it gets it in `x-forwarded-prefix`).
    #[arg(long, requires = "mount")]
    strip_prefix: bool,
    /// An environment entry for the function, over the host config's (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_pair)]
    env: Vec<(String, String)>,
    /// A secret: like --env, and masked in everything the function prints (repeatable).
    #[arg(long = "secret", value_name = "KEY=VALUE", value_parser = parse_pair)]
    secrets: Vec<(String, String)>,
    /// A host (or host:port) the function may call with outbound HTTP; replaces the host config's list
    /// (repeatable).
    #[arg(long = "allow-host", value_name = "HOST[:PORT]")]
    allowed_hosts: Vec<String>,
    /// A key-value store the component may open, over the host config's (repeatable).
    #[arg(long = "kv-store", value_name = "NAME")]
    kv_stores: Vec<String>,
    /// An object bucket the component may use, over the host config's (repeatable).
    #[arg(long = "object-bucket", value_name = "NAME")]
    object_buckets: Vec<String>,
    /// The component's deadline per invocation, in milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// The component's memory cap per instance, in MiB.
    #[arg(long)]
    memory_mb: Option<u64>,
    /// How many invocations of each of its functions may run at once.
    #[arg(long)]
    max_concurrency: Option<u32>,
    /// One function's deadline: `FUNCTION=MS` (repeatable).
    #[arg(long = "function-timeout-ms", value_name = "FUNCTION=MS", value_parser = parse_number_pair::<u64>)]
    function_timeout_ms: Vec<(String, u64)>,
    /// One function's memory cap: `FUNCTION=MIB` (repeatable).
    #[arg(long = "function-memory-mb", value_name = "FUNCTION=MIB", value_parser = parse_number_pair::<u64>)]
    function_memory_mb: Vec<(String, u64)>,
    /// One function's concurrency limit: `FUNCTION=N` (repeatable).
    #[arg(long = "function-max-concurrency", value_name = "FUNCTION=N", value_parser = parse_number_pair::<u32>)]
    function_max_concurrency: Vec<(String, u32)>,
    /// Reuse instances of the component's HTTP functions (WASI 0.3 only):
    /// `max_requests=128,max_concurrent=16,idle_ms=1000`, any of them (`""` for all the defaults).
    #[arg(long, value_name = "SETTINGS")]
    reuse: Option<ReuseSettings>,
    /// One function's instance reuse: `FUNCTION=max_requests=128,max_concurrent=16,idle_ms=1000` (repeatable).
    #[arg(long = "function-reuse", value_name = "FUNCTION=SETTINGS", value_parser = parse_reuse_pair)]
    function_reuse: Vec<(String, ReuseSettings)>,
    /// Keep the input of each failed invocation, for `edgefn replay` (the host config's `record_failures`).
    #[arg(long)]
    record_failures: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) fn parse_pair(value: &str) -> Result<(String, String), String> {
    let (key, value) = value.split_once('=').ok_or("expected KEY=VALUE")?;
    if key.is_empty() {
        return Err("the key before `=` is empty".into());
    }
    Ok((key.to_owned(), value.to_owned()))
}

fn parse_reuse_pair(value: &str) -> Result<(String, ReuseSettings), String> {
    let (function, settings) = value.split_once('=').ok_or("expected FUNCTION=SETTINGS")?;
    Ok((function.to_owned(), settings.parse()?))
}

fn parse_number_pair<T: std::str::FromStr>(value: &str) -> Result<(String, T), String> {
    let (key, number) = parse_pair(value)?;
    let number = number.parse().map_err(|_| format!("`{number}` is not a valid number"))?;
    Ok((key, number))
}

impl DeployArgs {
    fn overrides(&self) -> ComponentConfig {
        let mut functions: BTreeMap<String, FunctionSettings> = BTreeMap::new();
        for (function, ms) in &self.function_timeout_ms {
            functions.entry(function.clone()).or_default().timeout_ms = Some(*ms);
        }
        for (function, mib) in &self.function_memory_mb {
            functions.entry(function.clone()).or_default().memory_mb = Some(*mib);
        }
        for (function, n) in &self.function_max_concurrency {
            functions.entry(function.clone()).or_default().max_concurrency = Some(*n);
        }
        for (function, reuse) in &self.function_reuse {
            functions.entry(function.clone()).or_default().reuse = Some(*reuse);
        }
        ComponentConfig {
            env: self.env.iter().cloned().collect(),
            secrets: self.secrets.iter().cloned().collect(),
            allowed_outbound_hosts: self.allowed_hosts.clone(),
            timeout_ms: self.timeout_ms,
            memory_mb: self.memory_mb,
            max_concurrency: self.max_concurrency,
            reuse: self.reuse,
            functions,
            key_value_stores: self.kv_stores.clone(),
            object_buckets: self.object_buckets.clone(),
            record_failures: self.record_failures,
            ..ComponentConfig::default()
        }
    }
}

/// Who deploys, for the version's record: `user@host`.
pub(crate) fn deployer() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    if host.is_empty() { user } else { format!("{user}@{host}") }
}

/// The `.wasm` for `path`, building it first when it is a crate directory, and the component's default name.
pub(crate) fn resolve_component(path: &Path) -> anyhow::Result<(PathBuf, String)> {
    let wasm = if path.is_dir() { build::build_crate(path)? } else { path.to_owned() };
    let name = wasm.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "component".into());
    Ok((wasm, name))
}

/// A duration in milliseconds as the host reports it, to a tenth.
pub(crate) fn ms(value: &Value) -> String {
    format!("{:.1}", value.as_f64().unwrap_or_default())
}

pub(crate) fn run(args: DeployArgs) -> anyhow::Result<()> {
    let (wasm_path, default_name) = resolve_component(&args.path)?;
    let name = args.name.clone().unwrap_or(default_name);
    let mount = args.mount.clone().map(|route| Mount { route, strip_prefix: args.strip_prefix });
    let mut config = args.overrides();
    let assets = static_files(&args.path, args.assets.as_deref(), &mut config)?;
    let upload = Upload { source: &args.path, config, mount, canary_percent: args.canary, assets };
    let outcome = upload.send(&args.admin, &wasm_path, &name)?;
    if args.admin.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        println!("{}", summary(&name, &outcome));
    }
    Ok(())
}

/// The static files to deploy from `source` (a crate directory or a .wasm): the folder `flag` names, else the one
/// the crate declares, packed into a bundle; their settings go into `config`.
pub(crate) fn static_files(
    source: &Path,
    flag: Option<&Path>,
    config: &mut ComponentConfig,
) -> anyhow::Result<Option<Vec<u8>>> {
    let declared = if source.is_dir() { build::declared_assets(source)? } else { None };
    let Some(dir) = flag.map(Path::to_owned).or_else(|| declared.as_ref()?.dir.clone()) else { return Ok(None) };
    let bundle = crate::assets::bundle::pack(&dir)?;
    let mut settings = declared.unwrap_or_default();
    if let Some(given) = &config.assets {
        settings = settings.merged_with(given);
    }
    settings.dir = None;
    config.assets = Some(settings);
    Ok(Some(bundle))
}

/// What goes up with a component besides its bytes.
pub(crate) struct Upload<'a> {
    /// Where it came from (a crate directory or a .wasm), for the version's record.
    pub source: &'a Path,
    pub config: ComponentConfig,
    pub mount: Option<Mount>,
    pub canary_percent: Option<u8>,
    /// Its static files, as a bundle.
    pub assets: Option<Vec<u8>>,
}

impl Upload<'_> {
    /// Uploads `wasm_path` as a new version of component `name`, which the host validates, snapshots, compiles and
    /// makes live; returns the host's answer. A spinner shows on a terminal meanwhile.
    pub(crate) fn send(self, admin: &AdminArgs, wasm_path: &Path, name: &str) -> anyhow::Result<Value> {
        let wasm = std::fs::read(wasm_path).with_context(|| format!("failed to read {}", wasm_path.display()))?;
        eprintln!("uploading {name} ({} KiB) to {}", wasm.len().div_ceil(1024), admin.url());
        let body = DeployBody {
            wasm_base64: base64::engine::general_purpose::STANDARD.encode(&wasm),
            source: Some(self.source.display().to_string()),
            deployed_by: Some(deployer()),
            config: self.config,
            mount: self.mount,
            canary_percent: self.canary_percent,
            assets_base64: self.assets.map(|bundle| base64::engine::general_purpose::STANDARD.encode(bundle)),
        };
        drop(wasm);
        let progress = super::output::Spinner::start(format!("uploading and compiling {name}"));
        let outcome = admin.call("POST", &format!("/v1/components/{name}/versions"), Some(serde_json::to_value(body)?));
        drop(progress);
        outcome
    }
}

/// A deploy's answer as one line: the version, whether it compiled (and how long that took), how fast it went live.
pub(crate) fn summary(name: &str, outcome: &Value) -> String {
    let field = |key: &str| outcome.get(key).cloned().unwrap_or(Value::Null);
    let version = field("version");
    let hash = field("hash").as_str().map(|h| h[..h.len().min(12)].to_owned()).unwrap_or_default();
    if field("unchanged") == Value::Bool(true) {
        return format!("{name}: unchanged, version {version} (sha256 {hash}) is live");
    }
    let compile = if field("compiled") == Value::Bool(true) {
        format!("compiled in {} ms", field("compile_ms"))
    } else {
        "cached artifact, no compile".to_owned()
    };
    match field("canary_percent").as_u64() {
        Some(percent) => format!(
            "deployed {name} version {version} (sha256 {hash}) as a canary taking {percent}% of traffic: {compile}, \
             live in {} ms",
            ms(&field("switch_ms"))
        ),
        None => format!(
            "deployed {name} version {version} (sha256 {hash}): {compile}, live in {} ms",
            ms(&field("switch_ms"))
        ),
    }
}
