//! `edgefn inspect FILE.wasm`.

use crate::component;
use anyhow::Context as _;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub(crate) struct InspectArgs {
    /// The component to read.
    file: PathBuf,
}

pub(crate) fn run(args: InspectArgs) -> anyhow::Result<()> {
    let wasm = std::fs::read(&args.file).with_context(|| format!("failed to read {}", args.file.display()))?;
    let inspection = component::inspect(&wasm).with_context(|| format!("cannot inspect {}", args.file.display()))?;
    println!("{} (sha256 {})", args.file.display(), inspection.hash);
    if inspection.functions.is_empty() {
        println!(
            "  no edgefn manifest: a plain component; serve it with `edgefn up --mount /route={}`",
            args.file.display()
        );
        return Ok(());
    }
    let width = inspection.functions.iter().map(|f| f.name.len()).max().unwrap_or(0);
    for function in &inspection.functions {
        println!("  {:width$}  {}", function.name, function.trigger);
    }
    Ok(())
}
