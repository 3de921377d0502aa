//! Durable workflow figures (issue 22), in process, on a real data dir:
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2 -p workflow-probe
//! cargo bench -p edgefn-host --bench workflows
//! ```
//!
//! - **per step**: one run of workflow-probe's `noop` with 2,000 steps that do nothing, start to done: each step is
//!   replayed past, journaled through the resume's lease (one SQLite transaction: check the run, insert the entry,
//!   count it), and the resume goes on to the next; a fresh instance replays the journal every second
//!   (`RESUME_SHARE`). Against it, a raw SQLite loop doing the same inserts with no host around it: in a fresh
//!   database file on the same disk (WAL, synchronous = NORMAL, as the host), per step one transaction that inserts
//!   the same JSON entry and updates the run's row. Figure: steps/s edgefn / steps/s raw (target >= 0.5x).
//! - **runs/s**: 1,000 runs of `noop` with 3 steps started at once (through the engine, as the admin API does), from
//!   the first start until the last is done.
//! - **resume after a restart**: 1,000 runs of `nap` sleeping 2 s, the node stopped while they sleep and started
//!   again once they are due: from the new node's start returning until every run is done (and the node's start
//!   itself, restoring the deployment, apart).
//!
//! The per-step figure is the median of 9 rounds' ratios (each round runs both, one after the other); the
//! runs/s figure the median of 3 rounds.

use edgefn_host::config::{ComponentConfig, HostConfig};
use edgefn_host::deployments::DeployRequest;
use edgefn_host::node::Node;
use edgefn_host::storage::workflows::RunState;
use rusqlite::params;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const STEPS: u32 = 2_000;
const RUNS: usize = 1_000;
const ROUNDS: usize = 3;
/// Rounds of the per-step figure: a round takes a fraction of a second, and the machine's noise is larger.
const STEP_ROUNDS: usize = 9;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn probe() -> Vec<u8> {
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release/workflow_probe.wasm");
    std::fs::read(&wasm).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build it first: cargo build --release --target wasm32-wasip2 -p workflow-probe",
            wasm.display()
        )
    })
}

async fn deploy_probe(node: &Node) {
    let request = DeployRequest {
        name: "workflow_probe".into(),
        wasm: probe(),
        source: "workflow_probe.wasm".into(),
        deployed_by: "bench".into(),
        overrides: ComponentConfig { key_value_stores: vec!["default".into()], ..ComponentConfig::default() },
        mount: None,
        canary_percent: None,
        assets: None,
    };
    node.deployments.deploy(request).await.expect("deploy workflow_probe");
}

/// Waits until run `id` is done; panics naming its state after `within`. (It reads the run's row alone: reading
/// its journal every few milliseconds would take a share of the two cores from the run it measures.)
async fn wait_done(node: &Node, id: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let run = node.workflows.db().run(id).await.expect("load").expect("the run");
        match run.state {
            RunState::Done => return,
            RunState::Failed | RunState::Cancelled => panic!("run {id} ended {:?}: {:?}", run.state, run.error),
            _ => assert!(Instant::now() < deadline, "run {id} is still {:?}", run.state),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// How many runs are done.
async fn done(node: &Node) -> usize {
    node.workflows.db().list(Some(RunState::Done), 1_000_000).await.expect("list").len()
}

/// The raw loop: steps/s of one transaction per step inserting the same entry and updating the run.
fn raw(dir: &Path, round: usize) -> f64 {
    let mut conn = rusqlite::Connection::open(dir.join(format!("raw-{round}.db"))).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL").expect("wal");
    conn.pragma_update(None, "synchronous", "NORMAL").expect("sync");
    conn.execute_batch(
        "CREATE TABLE runs (id TEXT PRIMARY KEY, state TEXT, due_at INTEGER, entries INTEGER, bytes INTEGER,
             updated_at INTEGER) WITHOUT ROWID;
         CREATE TABLE journal (run TEXT, seq INTEGER, entry TEXT, at INTEGER, PRIMARY KEY (run, seq)) WITHOUT ROWID;
         INSERT INTO runs VALUES ('r', 'ready', 0, 0, 0, 0);",
    )
    .expect("schema");
    let started = Instant::now();
    for step in 0..STEPS {
        let entry = format!(r#"{{"kind":"step","name":"s{step}","value":null,"attempts":1}}"#);
        let tx = conn.transaction().expect("tx");
        tx.prepare_cached("INSERT INTO journal (run, seq, entry, at) VALUES ('r', ?1, ?2, ?3)")
            .expect("prepare")
            .execute(params![step, entry, step])
            .expect("insert");
        tx.prepare_cached(
            "UPDATE runs SET state = 'ready', due_at = ?1, entries = entries + 1, bytes = bytes + ?2,
                 updated_at = ?1 WHERE id = 'r'",
        )
        .expect("prepare")
        .execute(params![step, entry.len()])
        .expect("update");
        tx.commit().expect("commit");
    }
    f64::from(STEPS) / started.elapsed().as_secs_f64()
}

fn main() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut figures = Vec::new();
    {
        let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
        let node = tokio.block_on(async {
            let node = Node::start(data.path(), HostConfig::default()).await.expect("node");
            deploy_probe(&node).await;
            node
        });
        let (mut per_step, mut bare) = (Vec::new(), Vec::new());
        for round in 0..STEP_ROUNDS {
            let steps_per_s = tokio.block_on(async {
                let started = Instant::now();
                let id = format!("steps-{round}");
                node.workflows.start("noop", json!(STEPS), Some(id.clone())).await.expect("start");
                wait_done(&node, &id, Duration::from_secs(300)).await;
                f64::from(STEPS) / started.elapsed().as_secs_f64()
            });
            per_step.push(steps_per_s);
            bare.push(raw(data.path(), round));
            println!("  round {round}: {steps_per_s:.0} steps/s, raw {:.0}", bare[round]);
        }
        // Each round measures both, one after the other: the ratio of a round compares them under the same load of
        // the machine, and the figure is the median of those ratios.
        let ratio = median(per_step.iter().zip(&bare).map(|(workflow, raw)| workflow / raw).collect());
        let (per_step, bare) = (median(per_step), median(bare));
        println!("one run of {STEPS} no-op steps, median of {STEP_ROUNDS}:");
        println!("  raw SQLite loop (a transaction per step):  {bare:>9.0} steps/s ({:.1} us/step)", 1e6 / bare);
        println!(
            "  edgefn workflow (journal + resume):        {per_step:>9.0} steps/s ({:.1} us/step)",
            1e6 / per_step
        );
        println!("  edgefn / raw, the median of the rounds' ratios: {ratio:.2}x");
        figures.push(("workflow_steps_per_s", per_step));
        figures.push(("workflow_step_vs_raw_sqlite", ratio));

        let mut runs_per_s = Vec::new();
        for round in 0..ROUNDS {
            let rate = tokio.block_on(async {
                let before = done(&node).await;
                let started = Instant::now();
                for i in 0..RUNS {
                    node.workflows.start("noop", json!(3), Some(format!("three-{round}-{i}"))).await.expect("start");
                }
                let deadline = started + Duration::from_secs(300);
                while done(&node).await < before + RUNS {
                    assert!(Instant::now() < deadline, "not every run was done within 300 s");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                RUNS as f64 / started.elapsed().as_secs_f64()
            });
            println!("  round {round}: {rate:.0} runs/s");
            runs_per_s.push(rate);
        }
        let runs_per_s = median(runs_per_s);
        println!(
            "{RUNS} runs of a three-step no-op workflow started at once, median of {ROUNDS}: {runs_per_s:.0} runs/s"
        );
        figures.push(("workflow_three_step_runs_per_s", runs_per_s));

        tokio.block_on(async {
            for i in 0..RUNS {
                node.workflows.start("nap", json!(2_000), Some(format!("nap-{i}"))).await.expect("start");
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            while node.workflows.db().list(Some(RunState::Sleeping), 1_000_000).await.expect("list").len() < RUNS {
                assert!(Instant::now() < deadline, "the runs never all slept");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        drop(node);
        tokio.shutdown_timeout(Duration::from_secs(10));
    }
    // Past every run's due time, then a new node on the same data dir.
    std::thread::sleep(Duration::from_millis(2_500));
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    let (start, resume) = tokio.block_on(async {
        let began = Instant::now();
        let node = Node::start(data.path(), HostConfig::default()).await.expect("node");
        let start = began.elapsed();
        let before = done(&node).await;
        let resumed = Instant::now();
        let deadline = resumed + Duration::from_secs(300);
        while done(&node).await < before + RUNS {
            assert!(Instant::now() < deadline, "the sleeping runs never all finished");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (start, resumed.elapsed())
    });
    println!(
        "{RUNS} runs due after a restart: node start (restoring the deployment) {:.0} ms, then every run done in \
         {:.0} ms ({:.0} resumes/s)",
        start.as_secs_f64() * 1e3,
        resume.as_secs_f64() * 1e3,
        RUNS as f64 / resume.as_secs_f64()
    );
    figures.push(("workflow_resume_1000_after_restart_ms", resume.as_secs_f64() * 1e3));
    for (name, value) in figures {
        println!("figure: {name} {value:.3}");
    }
}
