//! `edgefn dev [PATH]`: the inner loop. Uses the host the data dir names, or starts one; builds the crate, deploys
//! it, then watches its sources and redeploys on every save, printing cargo's diagnostics when a build fails (the
//! last good version keeps serving) and the component's live log below. Ctrl-C stops the host it started.

use super::admin_client::AdminArgs;
use super::deploy::{Upload, summary};
use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub(crate) struct DevArgs {
    /// The function crate (default: the current directory).
    #[arg(default_value = ".")]
    path: PathBuf,
    /// The component's name (default: the crate's).
    #[arg(long)]
    name: Option<String>,
    /// The host config, for a host this starts.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where a host this starts serves functions.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Where a host this starts serves its admin API.
    #[arg(long, default_value = "127.0.0.1:8081")]
    admin_listen: String,
    #[command(flatten)]
    admin: AdminArgs,
}

/// How long a burst of file events may go on before one rebuild: an editor's save is several events.
const SETTLE: Duration = Duration::from_millis(150);
/// How long a host this starts may take to answer its admin API.
const HOST_START_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn run(args: DevArgs) -> anyhow::Result<()> {
    let dir = args.path.canonicalize().with_context(|| format!("no crate at {}", args.path.display()))?;
    if !dir.join("Cargo.toml").is_file() {
        bail!("{} is not a function crate (no Cargo.toml)", dir.display());
    }
    let started: Arc<Mutex<Option<Child>>> = Arc::new(Mutex::new(None));
    {
        let started = started.clone();
        ctrlc::set_handler(move || {
            stop(&started);
            std::process::exit(130);
        })
        .context("failed to handle Ctrl-C")?;
    }
    if reachable(&args.admin) {
        eprintln!("dev: using the host at {}", args.admin.url());
    } else {
        let child = start_host(&args)?;
        *started.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(child);
        wait_for_host(&args.admin, &started)?;
    }
    let outcome = watch_and_deploy(&args, &dir);
    stop(&started);
    outcome
}

/// Whether a host answers at the admin URL and token the CLI would use.
fn reachable(admin: &AdminArgs) -> bool {
    admin.call("GET", "/v1/components", None).is_ok()
}

/// Starts `edgefn up` on the data dir, with the given listeners; its output goes where ours does.
fn start_host(args: &DevArgs) -> anyhow::Result<Child> {
    let data = args.admin.data();
    std::fs::create_dir_all(data).with_context(|| format!("failed to create the data dir {}", data.display()))?;
    // A stale address from an earlier host must not be mistaken for this one's.
    let _ = std::fs::remove_file(data.join(crate::admin::URL_FILE));
    let mut command = Command::new(std::env::current_exe().context("cannot find the edgefn binary")?);
    command.args(["up", "--listen", &args.listen, "--admin-listen", &args.admin_listen]).arg("--data").arg(data);
    if let Some(config) = &args.config {
        command.arg("--config").arg(config);
    }
    eprintln!("dev: starting a host (data {})", data.display());
    command.spawn().context("failed to start `edgefn up`")
}

/// Waits until the started host answers, or fails when it exits or takes too long.
fn wait_for_host(admin: &AdminArgs, started: &Mutex<Option<Child>>) -> anyhow::Result<()> {
    let deadline = Instant::now() + HOST_START_TIMEOUT;
    loop {
        if admin.data().join(crate::admin::URL_FILE).is_file() && reachable(admin) {
            return Ok(());
        }
        if let Some(child) = started.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!("the host exited before it served ({status}); its output is above");
        }
        if Instant::now() > deadline {
            bail!("the host did not answer within {HOST_START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops the host this started, if any: gracefully (SIGTERM), then for good after 10 s.
fn stop(started: &Mutex<Option<Child>>) {
    let Some(mut child) = started.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() else { return };
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with a pid of a child this process spawned and has not yet reaped, and a valid signal.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Deploys once, then again after every change under `dir` (outside `target/` and dot directories), until the
/// watcher stops. The component's log follows along from its first deploy on.
fn watch_and_deploy(args: &DevArgs, dir: &Path) -> anyhow::Result<()> {
    let (events, changes) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(events).context("failed to watch the sources")?;
    notify::Watcher::watch(&mut watcher, dir, notify::RecursiveMode::Recursive)
        .with_context(|| format!("failed to watch {}", dir.display()))?;
    let mut following = None;
    loop {
        if let Some(name) = deploy_once(args, dir)
            && following.is_none()
        {
            following = Some(follow_log(args.admin.clone(), name));
        }
        eprintln!("dev: watching {} for changes (Ctrl-C to stop)", dir.display());
        // Wait for a change that matters, then for the burst to settle.
        loop {
            let event: notify::Result<notify::Event> = changes.recv().context("the file watcher stopped")?;
            if event.is_ok_and(|event| is_source_change(dir, &event)) {
                break;
            }
        }
        while changes.recv_timeout(SETTLE).is_ok() {}
    }
}

/// Whether `event` changed a source: not cargo's `target/`, not a dot directory (`.git`, the data dir), not an
/// editor's swap or backup file, and not a mere read.
fn is_source_change(dir: &Path, event: &notify::Event) -> bool {
    if matches!(event.kind, notify::EventKind::Access(_)) {
        return false;
    }
    event.paths.iter().any(|path| {
        let relative = path.strip_prefix(dir).unwrap_or(path);
        let hidden = relative.components().any(|part| {
            let part = part.as_os_str().to_string_lossy();
            part == "target" || part.starts_with('.')
        });
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let scratch = name.ends_with('~') || name.ends_with(".swp") || name.ends_with(".swx") || name == "4913";
        !hidden && !scratch
    })
}

/// Builds and deploys the crate; returns the component's name, or `None` when the build or the deploy failed
/// (what failed is printed; the version live before keeps serving).
fn deploy_once(args: &DevArgs, dir: &Path) -> Option<String> {
    let begun = Instant::now();
    let wasm = match super::build::build_crate(dir) {
        Ok(wasm) => wasm,
        Err(error) => {
            eprintln!("dev: {error:#}; the live version keeps serving");
            return None;
        }
    };
    let built = begun.elapsed();
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| wasm.file_stem().map_or_else(|| "component".into(), |s| s.to_string_lossy().into_owned()));
    let mut config = crate::config::ComponentConfig::default();
    let assets = match super::deploy::static_files(dir, None, &mut config) {
        Ok(assets) => assets,
        Err(error) => {
            eprintln!("dev: {error:#}; the live version keeps serving");
            return None;
        }
    };
    let upload = Upload { source: dir, config, mount: None, canary_percent: None, assets };
    match upload.send(&args.admin, &wasm, &name) {
        Ok(outcome) => {
            let deployed = begun.elapsed() - built;
            println!("{}", summary(&name, &outcome));
            eprintln!("dev: built in {} ms, deployed in {} ms", built.as_millis(), deployed.as_millis());
            Some(name)
        }
        Err(error) => {
            eprintln!("dev: the deploy failed: {error:#}; the live version keeps serving");
            None
        }
    }
}

/// Prints the component's log records as they are written, below the build output, until the host goes away.
fn follow_log(admin: AdminArgs, component: String) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let query = [("function", Some(component))];
        let Ok(lines) = admin.stream_lines("/v1/logs/follow", &query) else { return };
        let mut event = String::new();
        for line in lines.map_while(Result::ok) {
            if let Some(name) = line.strip_prefix("event:") {
                event = name.trim().to_owned();
            } else if let Some(data) = line.strip_prefix("data:")
                && event == "log"
                && let Ok(log) = serde_json::from_str(data.trim_start())
                && let Ok(text) = super::logs::render(&log, false)
            {
                println!("{text}");
            }
        }
    })
}
