//! `edgefn new NAME [--template http|cron|queue|webhook]`: writes a function crate from templates embedded in the
//! binary, with a copy of the SDK that matches this host (in `NAME/edgefn-sdk/`, see `host/build.rs`), so it
//! builds and passes its own `cargo test` anywhere, with only cargo, and deploys with `edgefn deploy NAME`.

use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));

/// What a new crate starts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Template {
    /// HTTP functions: a route with a parameter and a JSON POST.
    Http,
    /// A scheduled function with retries.
    Cron,
    /// An HTTP endpoint that queues jobs, and their consumer, with a dead-letter queue.
    Queue,
    /// A webhook receiver that checks an HMAC-SHA256 signature with a secret.
    Webhook,
}

impl Template {
    fn source(self) -> &'static str {
        match self {
            Template::Http => include_str!("../../templates/new/http.rs"),
            Template::Cron => include_str!("../../templates/new/cron.rs"),
            Template::Queue => include_str!("../../templates/new/queue.rs"),
            Template::Webhook => include_str!("../../templates/new/webhook.rs"),
        }
    }

    fn extra_dependencies(self) -> &'static str {
        match self {
            Template::Webhook => "hmac = \"0.12\"\nsha2 = \"0.10\"\nhex = \"0.4\"\n",
            Template::Http | Template::Cron | Template::Queue => "",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Template::Http => "http",
            Template::Cron => "cron",
            Template::Queue => "queue",
            Template::Webhook => "webhook",
        }
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct NewArgs {
    /// The crate's name (letters, digits, `-` and `_`); also its directory, unless --path says otherwise.
    name: String,
    /// What the crate starts as.
    #[arg(long, value_enum, default_value = "http")]
    template: Template,
    /// Where to write the crate (default: ./NAME). It must not exist yet.
    #[arg(long)]
    path: Option<PathBuf>,
}

pub(crate) fn run(args: NewArgs) -> anyhow::Result<()> {
    let dir = args.path.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    write_crate(&args.name, args.template, &dir)?;
    println!("wrote {} ({} template) in {}", args.name, args.template.name(), dir.display());
    println!("  cd {} && cargo test        # the functions, natively", dir.display());
    println!("  edgefn deploy {}            # build for wasm32-wasip2 and deploy to a running host", dir.display());
    Ok(())
}

/// Checks a crate name: what cargo accepts, and what edgefn can name a component after.
fn validate_name(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        bail!("invalid crate name `{name}`: use up to 64 letters, digits, `-` and `_`, starting with a letter");
    }
    Ok(())
}

/// Writes the crate `name` from `template` into `dir`.
pub(crate) fn write_crate(name: &str, template: Template, dir: &Path) -> anyhow::Result<()> {
    validate_name(name)?;
    if dir.exists() {
        bail!("{} already exists: give another name or --path", dir.display());
    }
    // cargo names the .wasm after the crate with `-` as `_`: that is the component's name on the host.
    let component = name.replace('-', "_");
    let fill = |text: &str| {
        text.replace("__CRATE__", name)
            .replace("__COMPONENT__", &component)
            .replace("__ROUTE__", name)
            .replace("__QUEUE__", &format!("{name}-jobs"))
            .replace("__TEMPLATE__", template.name())
            .replace("__EXTRA_DEPENDENCIES__\n", template.extra_dependencies())
    };
    let files: Vec<(PathBuf, Vec<u8>)> = [
        ("Cargo.toml", fill(include_str!("../../templates/new/Cargo.toml.tmpl"))),
        ("src/lib.rs", fill(template.source())),
        ("README.md", fill(include_str!("../../templates/new/README.md.tmpl"))),
        (".gitignore", include_str!("../../templates/new/gitignore").to_owned()),
        // The versions the SDK is built and tested with: cargo keeps those this crate uses.
        ("Cargo.lock", LOCK_FILE.to_owned()),
    ]
    .into_iter()
    .map(|(path, text)| (PathBuf::from(path), text.into_bytes()))
    .chain(SDK_FILES.iter().map(|(path, bytes)| (Path::new("edgefn-sdk").join(path), bytes.to_vec())))
    .collect();
    for (relative, bytes) in files {
        let path = dir.join(&relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("failed to create {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_crate_has_its_template_and_a_standalone_sdk() {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("my-fn");
        write_crate("my-fn", Template::Queue, &target).expect("write");
        let manifest = std::fs::read_to_string(target.join("Cargo.toml")).expect("manifest");
        assert!(manifest.contains("name = \"my-fn\"") && manifest.contains("[workspace]"), "{manifest}");
        let source = std::fs::read_to_string(target.join("src/lib.rs")).expect("source");
        assert!(source.contains("queue(\"my-fn-jobs\"") && source.contains("\"/my-fn/jobs\""), "{source}");
        assert!(!source.contains("__"), "a placeholder is left: {source}");
        let sdk = std::fs::read_to_string(target.join("edgefn-sdk/edgefn/Cargo.toml")).expect("sdk manifest");
        assert!(!sdk.contains("workspace"), "the SDK's manifest still inherits from the workspace: {sdk}");
        assert!(sdk.contains("path = \"../edgefn-macros\""), "{sdk}");
        assert!(target.join("edgefn-sdk/wit/world.wit").is_file());
        assert!(target.join("edgefn-sdk/edgefn-manifest/src/route.rs").is_file());
        let error = write_crate("my-fn", Template::Http, &target).unwrap_err().to_string();
        assert!(error.contains("already exists"), "{error}");
        assert!(write_crate("9lives", Template::Http, &dir.path().join("x")).is_err());
    }
}
