//! Workflow runs on a real SQLite file: starting by id once, what each outcome does to a run, signals before and
//! during a wait, time-outs, stale resumes and the journal's limit.

use super::*;
use edgefn_manifest::workflow::{Next, Outcome};
use serde_json::json;

fn store(dir: &std::path::Path) -> WorkflowDb {
    WorkflowDb::new(Database::open(dir).expect("open"))
}

fn new_run(id: &str, component: &str, function: &str, input: serde_json::Value) -> NewRun {
    NewRun { id: Some(id.into()), component: component.into(), function: function.into(), version: Some(1), input }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn step(name: &str) -> Entry {
    Entry::Step { name: name.into(), value: Some(json!(name)), error: None, attempts: 1 }
}

fn outcome(entries: Vec<Entry>, next: Next) -> Outcome {
    Outcome { entries, next }
}

#[test]
fn the_same_id_starts_one_run_and_outcomes_move_it_along() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = store(dir.path());
    rt().block_on(async {
        let (run, created) = db.start(new_run("order-1", "shop", "checkout", json!({"n": 1})), 10).await.unwrap();
        assert!(created);
        assert_eq!((run.state, run.due_at), (RunState::Ready, Some(10)));
        let (again, created) = db.start(new_run("order-1", "shop", "checkout", json!({"n": 2})), 11).await.unwrap();
        assert!(!created, "the same id twice starts one run");
        assert_eq!(again.input, json!({"n": 1}));
        assert_eq!(db.due(10, 10, vec![]).await.unwrap(), ["order-1"]);
        assert!(db.due(9, 10, vec![]).await.unwrap().is_empty());

        // A step ends: due again at once.
        assert!(db.apply("order-1", 0, outcome(vec![step("charge")], Next::Continue), 20).await.unwrap());
        // A resume that started from the old journal is stale: nothing is written.
        assert!(!db.apply("order-1", 0, outcome(vec![step("charge")], Next::Continue), 21).await.unwrap());
        // An attempt fails: retried at its backoff, the attempt kept for the timeline.
        let failed = StepError { status: 503, message: "down".into() };
        let retry = Next::Retry { name: "ship".into(), attempt: 1, error: failed.clone(), at_ms: 500 };
        assert!(db.apply("order-1", 1, outcome(vec![], retry), 30).await.unwrap());
        let (run, journal) = db.load("order-1").await.unwrap().expect("the run");
        assert_eq!((run.state, run.due_at), (RunState::Retrying, Some(500)));
        assert_eq!(run.retry, Some(Retry { name: "ship".into(), attempts: 1 }));
        assert_eq!(journal.len(), 1);
        assert_eq!(db.attempts("order-1").await.unwrap()[0].error, failed);
        // Sleep, then done.
        let sleep = Entry::Sleep { until_ms: 900 };
        assert!(
            db.apply("order-1", 1, outcome(vec![step("ship"), sleep], Next::Sleep { until_ms: 900 }), 40)
                .await
                .unwrap()
        );
        let (run, _) = db.load("order-1").await.unwrap().expect("the run");
        assert_eq!((run.state, run.due_at, run.retry), (RunState::Sleeping, Some(900), None));
        assert_eq!(db.next_due(vec![]).await.unwrap(), Some(900));
        assert_eq!(db.next_due(vec!["order-1".into()]).await.unwrap(), None, "a busy run is left out");
        assert!(db.due(1_000, 10, vec!["order-1".into()]).await.unwrap().is_empty());
        assert!(db.apply("order-1", 3, outcome(vec![], Next::Done { result: json!("ok") }), 950).await.unwrap());
        let (run, _) = db.load("order-1").await.unwrap().expect("the run");
        assert_eq!((run.state, run.due_at, run.result), (RunState::Done, None, Some(json!("ok"))));
        assert_eq!(db.next_due(vec![]).await.unwrap(), None);
        assert!(matches!(
            db.signal("order-1", "late", &json!(1), 960).await,
            Err(SignalError::Finished { state: "done", .. })
        ));
        assert_eq!(db.list(Some(RunState::Done), 10).await.unwrap().len(), 1);
        assert!(db.list(Some(RunState::Failed), 10).await.unwrap().is_empty());
    });
}

#[test]
fn a_signal_resolves_a_wait_or_waits_for_it_and_a_wait_times_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = store(dir.path());
    let wait = |name: &str| Entry::Event { name: name.into(), until_ms: 1_000, resolved: false, value: None };
    let waiting = |name: &str| Next::Wait { event: name.into(), until_ms: 1_000 };
    rt().block_on(async {
        db.start(new_run("a", "c", "f", json!(null)), 0).await.unwrap();
        assert!(db.apply("a", 0, outcome(vec![wait("approved")], waiting("approved")), 1).await.unwrap());
        let (run, _) = db.load("a").await.unwrap().expect("run");
        assert_eq!(
            (run.state, run.waiting_for.as_deref(), run.due_at),
            (RunState::Waiting, Some("approved"), Some(1_000))
        );
        // Another event is kept; the awaited one is delivered.
        assert_eq!(db.signal("a", "other", &json!(1), 2).await.unwrap(), Signalled::Kept);
        assert_eq!(db.signal("a", "approved", &json!(true), 3).await.unwrap(), Signalled::Delivered);
        let (run, journal) = db.load("a").await.unwrap().expect("run");
        assert_eq!((run.state, run.due_at), (RunState::Ready, Some(3)));
        assert_eq!(
            journal[0].entry,
            Entry::Event { name: "approved".into(), until_ms: 1_000, resolved: true, value: Some(json!(true)) }
        );
        // The kept signal answers the next wait for it at once.
        assert!(db.apply("a", 1, outcome(vec![wait("other")], waiting("other")), 4).await.unwrap());
        let (run, journal) = db.load("a").await.unwrap().expect("run");
        assert_eq!(run.state, RunState::Ready, "resolved by the kept signal");
        assert_eq!(
            journal[1].entry,
            Entry::Event { name: "other".into(), until_ms: 1_000, resolved: true, value: Some(json!(1)) }
        );
        // A wait nobody answers times out when due.
        assert!(db.apply("a", 2, outcome(vec![wait("never")], waiting("never")), 5).await.unwrap());
        assert_eq!(db.prepare_resume("a", 999).await.unwrap(), Prepared::NotDue, "not yet");
        let Prepared::Resume(run, journal) = db.prepare_resume("a", 1_000).await.unwrap() else { panic!("due") };
        assert_eq!(run.state, RunState::Ready);
        // The run's own counts follow its journal through every write, resolved waits included.
        let bytes: usize = journal.iter().map(|row| encode(&row.entry).len()).sum();
        assert_eq!((run.journal_entries, run.journal_bytes), (3, bytes));
        assert_eq!(
            journal[2].entry,
            Entry::Event { name: "never".into(), until_ms: 1_000, resolved: true, value: None }
        );
        assert!(matches!(db.signal("b", "x", &json!(1), 6).await, Err(SignalError::NotFound(_))));
        assert_eq!(db.cancel("a", 7).await.unwrap(), Some(true));
        assert_eq!(db.cancel("a", 8).await.unwrap(), Some(false), "cancelled already");
        // Cancelling: its compensation's outcome ends it cancelled; then it takes no more.
        let (run, _) = db.load("a").await.unwrap().expect("run");
        assert_eq!((run.state, run.due_at), (RunState::Cancelling, Some(7)));
        assert!(db.apply("a", 3, outcome(vec![], Next::Cancelled { failed: vec![] }), 9).await.unwrap());
        let (run, _) = db.load("a").await.unwrap().expect("run");
        assert_eq!((run.state, run.error.as_deref()), (RunState::Cancelled, Some("cancelled: its compensation ran")));
        assert!(!db.apply("a", 3, outcome(vec![], Next::Continue), 10).await.unwrap(), "a cancelled run takes no more");
    });
}

#[test]
fn a_journal_past_its_limit_fails_the_run_saying_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = store(dir.path());
    rt().block_on(async {
        db.start(new_run("big", "c", "f", json!(null)), 0).await.unwrap();
        let huge = Entry::Step {
            name: "x".into(),
            value: Some(json!("a".repeat(MAX_JOURNAL_BYTES))),
            error: None,
            attempts: 1,
        };
        assert!(db.apply("big", 0, outcome(vec![huge], Next::Continue), 1).await.unwrap());
        let (run, _) = db.load("big").await.unwrap().expect("run");
        assert_eq!(run.state, RunState::Failed);
        assert!(run.error.as_deref().unwrap_or_default().contains("journal is past its limit"), "{:?}", run.error);
    });
}

#[test]
fn retries_resume_only_runs_that_failed_outside_their_code_and_undeploys_count_and_cancel_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = store(dir.path());
    rt().block_on(async {
        for id in ["in-code", "replay", "waiting"] {
            db.start(new_run(id, "shop", "checkout", json!(null)), 0).await.unwrap();
        }
        db.start(new_run("other", "blog", "publish", json!(null)), 0).await.unwrap();
        // An id is one workflow's: another workflow cannot take it, nor be answered its run.
        let taken = db.start(new_run("other", "shop", "checkout", json!(null)), 1).await;
        assert!(matches!(&taken, Err(StartRefused::IdTaken { id }) if id == "other"), "{taken:?}");

        // A run its own code failed is final.
        let failed = Next::Failed { error: StepError { status: 402, message: "declined".into() } };
        assert!(db.apply("in-code", 0, outcome(vec![], failed), 10).await.unwrap());
        let refused = db.retry("in-code", None, 11).await;
        assert!(matches!(&refused, Err(RetryRefused::Final { state: "failed", .. })), "{refused:?}");
        // A non-deterministic replay is not: a retry resumes it, on the version named.
        let replay = Next::NonDeterministic { error: "non-deterministic".into() };
        assert!(db.apply("replay", 0, outcome(vec![], replay), 10).await.unwrap());
        let (run, _) = db.load("replay").await.unwrap().expect("run");
        assert!(run.retryable && run.state == RunState::Failed);
        assert_eq!(db.retry("replay", Some(7), 20).await.unwrap(), Retried::Resumed);
        let (run, _) = db.load("replay").await.unwrap().expect("run");
        assert_eq!(
            (run.state, run.due_at, run.version, run.error, run.retryable),
            (RunState::Ready, Some(20), Some(7), None, false)
        );
        // An unfinished run only moves, and only to a version named.
        let wait = Next::Wait { event: "approved".into(), until_ms: 5_000 };
        let entry = Entry::Event { name: "approved".into(), until_ms: 5_000, resolved: false, value: None };
        assert!(db.apply("waiting", 0, outcome(vec![entry], wait), 10).await.unwrap());
        assert!(matches!(db.retry("waiting", None, 30).await, Err(RetryRefused::Final { state: "waiting", .. })));
        assert_eq!(db.retry("waiting", Some(2), 30).await.unwrap(), Retried::Moved);
        let (run, _) = db.load("waiting").await.unwrap().expect("run");
        assert_eq!((run.state, run.due_at, run.version), (RunState::Waiting, Some(5_000), Some(2)));
        assert!(matches!(db.retry("nope", None, 30).await, Err(RetryRefused::NotFound(_))));

        let stats = db.stats().await.unwrap();
        assert_eq!(stats.oldest_wait_since, Some(10));
        assert!(stats.by_state.contains(&("waiting".to_owned(), 1)), "{stats:?}");
        // An undeploy counts the unfinished runs of its component, and a forced one cancels them, no other's.
        assert_eq!(db.unfinished("shop").await.unwrap(), 2);
        db.signal("waiting", "later", &json!(1), 31).await.unwrap();
        assert_eq!(db.cancel_component("shop", "undeployed", 40).await.unwrap(), 2);
        assert_eq!(db.unfinished("shop").await.unwrap(), 0);
        assert_eq!(db.unfinished("blog").await.unwrap(), 1);
        let (run, _) = db.load("waiting").await.unwrap().expect("run");
        assert_eq!((run.state, run.error.as_deref()), (RunState::Cancelled, Some("undeployed")));
    });
}

#[test]
fn a_run_past_its_age_limit_is_due_by_then_and_fails_saying_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = store(dir.path()).with_max_age(1_000);
    rt().block_on(async {
        db.start(new_run("old", "c", "f", json!(null)), 0).await.unwrap();
        // A wait past the limit is due by the limit, and a sleep too.
        let wait = Entry::Event { name: "approved".into(), until_ms: 60_000, resolved: false, value: None };
        let next = Next::Wait { event: "approved".into(), until_ms: 60_000 };
        assert!(db.apply("old", 0, outcome(vec![wait], next), 10).await.unwrap());
        let (run, _) = db.load("old").await.unwrap().expect("run");
        assert_eq!((run.state, run.due_at), (RunState::Waiting, Some(1_000)));
        assert_eq!(db.prepare_resume("old", 999).await.unwrap(), Prepared::NotDue, "not yet");
        assert_eq!(db.prepare_resume("old", 1_000).await.unwrap(), Prepared::Expired);
        let (run, _) = db.load("old").await.unwrap().expect("run");
        assert_eq!(run.state, RunState::Failed);
        assert!(!run.retryable, "as old on a retry");
        assert_eq!(run.error.as_deref(), Some("the run is older than its limit ([workflows] max_run_age_s = 1)"));
        assert_eq!(db.prepare_resume("old", 2_000).await.unwrap(), Prepared::NotDue, "failed once");
    });
}

#[test]
fn a_cancel_during_a_resume_that_did_not_know_leads_to_compensation_and_a_retry_keeps_cancelling() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = store(dir.path());
    rt().block_on(async {
        db.start(new_run("r", "c", "f", json!(null)), 0).await.unwrap();
        // Cancelled while a resume (called not cancelling) ran a step; it answers that it waits for an event.
        assert_eq!(db.cancel("r", 5).await.unwrap(), Some(true));
        let wait = Entry::Event { name: "approved".into(), until_ms: 60_000, resolved: false, value: None };
        let next = Next::Wait { event: "approved".into(), until_ms: 60_000 };
        let applied = db.apply_as("r", 0, outcome(vec![step("charge"), wait], next), 6, Some(false)).await.unwrap();
        assert_eq!(applied, Applied::Applied { cancelling: true });
        // Its work is kept, and the run is due at once to compensate, not waiting.
        let (run, journal) = db.load("r").await.unwrap().expect("run");
        assert_eq!((run.state, run.due_at, run.waiting_for, journal.len()), (RunState::Cancelling, Some(6), None, 2));
        // The compensating resume crashes for good: failed, retryable; a retry goes on cancelling, never forward.
        assert!(db.fail("r", "crashed 5 times", 7).await.unwrap());
        assert_eq!(db.retry("r", None, 8).await.unwrap(), Retried::Resumed);
        let (run, _) = db.load("r").await.unwrap().expect("run");
        assert_eq!((run.state, run.due_at), (RunState::Cancelling, Some(8)));
        // A compensation's failed attempt is retried at its backoff, still cancelling.
        let failed = StepError { status: 503, message: "down".into() };
        let retry = Next::Retry { name: "compensate:refund".into(), attempt: 1, error: failed, at_ms: 100 };
        assert_eq!(db.apply_as("r", 2, outcome(vec![], retry), 9, Some(true)).await.unwrap(), applied);
        let (run, _) = db.load("r").await.unwrap().expect("run");
        assert_eq!((run.state, run.due_at), (RunState::Cancelling, Some(100)));
        assert_eq!(run.retry, Some(Retry { name: "compensate:refund".into(), attempts: 1 }));
    });
}

#[test]
fn a_child_run_starts_with_its_parents_wait_and_its_end_resumes_the_parent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = store(dir.path());
    rt().block_on(async {
        db.start(new_run("p1", "shop", "checkout", json!(null)), 10).await.unwrap();
        let wait = Entry::Event { name: "child:label".into(), until_ms: i64::MAX, resolved: false, value: None };
        let child = Next::Child { name: "label".into(), workflow: "make-label".into(), input: json!({"n": 7}) };
        assert!(db.apply("p1", 0, outcome(vec![wait.clone()], child.clone()), 20).await.unwrap());
        let (parent, _) = db.load("p1").await.unwrap().expect("the parent");
        assert_eq!((parent.state, parent.waiting_for.as_deref()), (RunState::Waiting, Some("child:label")));
        let (started, _) = db.load("p1:label").await.unwrap().expect("the child");
        assert_eq!(
            (started.state, started.function.as_str(), started.input.clone(), started.version, started.parent),
            (RunState::Ready, "make-label", json!({"n": 7}), Some(1), Some("p1".to_owned())),
            "on the parent's version, due now"
        );
        // The child ends: the parent resumes with how.
        assert!(db.apply("p1:label", 0, outcome(vec![], Next::Done { result: json!("L-7") }), 30).await.unwrap());
        let (parent, journal) = db.load("p1").await.unwrap().expect("the parent");
        assert_eq!((parent.state, parent.due_at), (RunState::Ready, Some(30)));
        let Entry::Event { resolved: true, value: Some(end), .. } = &journal[0].entry else { panic!("{journal:?}") };
        assert_eq!(end, &json!({"run": "p1:label", "state": "done", "result": "L-7"}));

        // A second child that fails before its parent waits: the parent is told when it does.
        let child2 = Next::Child { name: "box".into(), workflow: "make-label".into(), input: json!(null) };
        let wait2 = Entry::Event { name: "child:box".into(), until_ms: i64::MAX, resolved: false, value: None };
        assert!(db.apply("p1", 1, outcome(vec![wait2], child2), 40).await.unwrap());
        assert!(db.fail("p1:box", "it crashed", 50).await.unwrap());
        let (parent, journal) = db.load("p1").await.unwrap().expect("the parent");
        assert_eq!(parent.state, RunState::Ready);
        let Entry::Event { value: Some(end), .. } = &journal[1].entry else { panic!("{journal:?}") };
        assert_eq!((end["state"].as_str(), end["error"].as_str()), (Some("failed"), Some("it crashed")));

        // Cancelling a parent cancels its children that have not ended.
        let child3 = Next::Child { name: "gift".into(), workflow: "wrap".into(), input: json!(null) };
        let wait3 = Entry::Event { name: "child:gift".into(), until_ms: i64::MAX, resolved: false, value: None };
        assert!(db.apply("p1", 2, outcome(vec![wait3], child3), 60).await.unwrap());
        assert_eq!(db.cancel("p1", 70).await.unwrap(), Some(true));
        let (gift, _) = db.load("p1:gift").await.unwrap().expect("the child");
        assert_eq!(gift.state, RunState::Cancelling);
        let (done_child, _) = db.load("p1:label").await.unwrap().expect("the child");
        assert_eq!(done_child.state, RunState::Done, "an ended child stays as it ended");
    });
}

#[test]
fn copies_running_the_same_logged_changes_agree_and_a_deposed_resumes_step_is_refused_on_each() {
    let dirs = [tempfile::tempdir().expect("temp dir"), tempfile::tempdir().expect("temp dir")];
    let copies = dirs.each_ref().map(|dir| store(dir.path()));
    let apply = |entries: Vec<Entry>| Command::Apply {
        id: "five-1".into(),
        journal_len: 0,
        outcome: outcome(entries, Next::Continue),
        now: 11,
        resume_cancelling: Some(false),
        max_age_ms: DEFAULT_MAX_RUN_AGE_MS,
    };
    // The new owner's step, then the same step from a resume on a node that lost the runs meanwhile.
    let log = [
        Command::Start { new: new_run("five-1", "shop", "five", json!(1)), now: 10 },
        apply(vec![step("s1")]),
        apply(vec![Entry::Step { name: "s1".into(), value: Some(json!("again")), error: None, attempts: 1 }]),
    ];
    rt().block_on(async {
        for copy in &copies {
            for (seq, command) in log.iter().enumerate() {
                let answer = copy.apply_logged(seq as u64 + 1, command.clone()).await.unwrap().expect("ran");
                if seq == 2 {
                    assert!(matches!(answer, Answer::Applied(Applied::Stale)), "{answer:?}");
                }
            }
            assert_eq!(copy.logged_until().await.unwrap(), 3);
            assert!(copy.apply_logged(2, log[1].clone()).await.unwrap().is_none(), "a change runs once per copy");
        }
        let [first, second] = &copies;
        let (run, journal) = first.load("five-1").await.unwrap().expect("run");
        assert_eq!(second.load("five-1").await.unwrap(), Some((run.clone(), journal.clone())), "the copies agree");
        assert_eq!(journal.iter().map(|row| row.entry.clone()).collect::<Vec<_>>(), [step("s1")], "journaled once");
        assert_eq!(run.journal_entries, 1);
    });
}
