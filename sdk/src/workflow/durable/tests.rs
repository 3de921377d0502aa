//! The replay protocol against a host played by the test: each call gets the journal so far and what it answers is
//! applied the way the host applies it.

use super::*;
use edgefn_manifest::workflow::{Call, Entry, Next, Outcome, Retry};
use serde_json::{Value, json};
use std::cell::Cell;

type Body = fn(Workflow, Value) -> crate::rt::LocalBoxFuture<'static, Result<Value>>;

/// One call of `body` on the run as it stands.
fn call(body: Body, input: &Value, journal: &[Entry], retry: Option<Retry>, now_ms: i64) -> Outcome {
    call_as(body, input, journal, retry, now_ms, false)
}

/// [`call`], for a run that is `cancelling` or not.
fn call_as(
    body: Body,
    input: &Value,
    journal: &[Entry],
    retry: Option<Retry>,
    now_ms: i64,
    cancelling: bool,
) -> Outcome {
    let call = Call {
        run: "run-1".into(),
        input: input.clone(),
        journal: journal.to_vec(),
        retry,
        now_ms,
        cancelling,
        lease: None,
    };
    let payload = serde_json::to_vec(&call).expect("encode");
    let answer = futures::executor::block_on(async {
        let (workflow, input) = match begin::<Value>(&payload) {
            Ok(begun) => begun,
            Err(refused) => return refused,
        };
        let result = body(workflow.clone(), input).await;
        finish(&workflow, result).await
    });
    serde_json::from_slice(&answer.expect("an outcome")).expect("decode")
}

/// Plays the host until the run ends or waits on something `advance` cannot give: answers the last outcome.
fn drive(body: Body, input: Value, journal: &mut Vec<Entry>) -> Outcome {
    let mut retry = None;
    let mut now = 1_000;
    for _ in 0..100 {
        let outcome = call(body, &input, journal, retry.take(), now);
        journal.extend(outcome.entries.clone());
        match &outcome.next {
            Next::Continue => {}
            Next::Retry { name, attempt, at_ms, .. } => {
                retry = Some(Retry { name: name.clone(), attempts: *attempt });
                now = *at_ms;
            }
            Next::Sleep { until_ms } => now = *until_ms,
            _ => return outcome,
        }
    }
    panic!("the run did not end in 100 calls: {journal:?}");
}

thread_local! {
    static CHARGES: Cell<u32> = const { Cell::new(0) };
    static FLAKY: Cell<u32> = const { Cell::new(0) };
}

fn three_steps(wf: Workflow, input: Value) -> crate::rt::LocalBoxFuture<'static, Result<Value>> {
    Box::pin(async move {
        let charged: String = wf
            .step("charge", StepOptions::default(), |attempt| async move {
                CHARGES.with(|c| c.set(c.get() + 1));
                Ok(format!("charged {} ({})", input["cents"], attempt.idempotency_key))
            })
            .await?;
        wf.sleep(Duration::from_secs(60)).await?;
        let at = wf.now()?;
        let shipped: u32 = wf
            .step(
                "ship",
                StepOptions::default().backoff(Duration::from_millis(10), Duration::from_millis(40)),
                |a| async move {
                    FLAKY.with(|f| f.set(f.get() + 1));
                    if a.number < 3 { Err(Error::internal("carrier down")) } else { Ok(a.number) }
                },
            )
            .await?;
        Ok(json!({ "charged": charged, "shipped_on_attempt": shipped, "at": millis(at) }))
    })
}

#[test]
fn a_run_replays_its_journal_runs_each_step_once_retries_and_sleeps() {
    CHARGES.with(|c| c.set(0));
    FLAKY.with(|f| f.set(0));
    let mut journal = Vec::new();
    let outcome = drive(three_steps, json!({ "cents": 500 }), &mut journal);
    let Next::Done { result } = outcome.next else { panic!("not done: {outcome:?}") };
    assert_eq!(result["charged"], json!("charged 500 (run-1:charge:1)"));
    assert_eq!(result["shipped_on_attempt"], json!(3));
    assert_eq!(result["at"], json!(61_000), "the time after the sleep, as journaled");
    assert_eq!(CHARGES.with(Cell::get), 1, "a journaled step never runs again");
    assert_eq!(FLAKY.with(Cell::get), 3, "two failed attempts and the good one");
    assert!(
        matches!(
            &journal[..],
            [
                Entry::Step { attempts: 1, .. },
                Entry::Sleep { until_ms: 61_000 },
                Entry::Now { ms: 61_000 },
                Entry::Step { attempts: 3, .. },
            ]
        ),
        "{journal:?}"
    );
}

#[test]
fn a_retry_waits_longer_each_time_and_a_client_error_is_not_retried() {
    let options = StepOptions::default().backoff(Duration::from_millis(100), Duration::from_millis(350));
    let waits: Vec<u128> = (2..=5).map(|next| options.delay_before(next).as_millis()).collect();
    assert_eq!(waits, [100, 200, 350, 350]);

    fn refused(wf: Workflow, _: Value) -> crate::rt::LocalBoxFuture<'static, Result<Value>> {
        Box::pin(async move {
            let paid =
                wf.step("pay", StepOptions::default(), |_| async { Err::<(), _>(Error::new(402, "declined")) }).await;
            let error = paid.expect_err("declined");
            // The code sees the step's error and compensates with another step.
            wf.step("release", StepOptions::default(), |_| async { Ok(()) }).await?;
            Err(Error::new(error.status(), format!("payment: {}", error.message())))
        })
    }
    let mut journal = Vec::new();
    let outcome = drive(refused, Value::Null, &mut journal);
    assert_eq!(outcome.next, Next::Failed { error: StepError { status: 402, message: "payment: declined".into() } });
    assert!(
        matches!(
            &journal[..],
            [
                Entry::Step { error: Some(StepError { status: 402, .. }), attempts: 1, .. },
                Entry::Step { error: None, .. },
            ]
        ),
        "one attempt only: {journal:?}"
    );
}

#[test]
fn a_run_waits_for_an_event_and_replays_its_payload() {
    fn approval(wf: Workflow, _: Value) -> crate::rt::LocalBoxFuture<'static, Result<Value>> {
        Box::pin(async move {
            let approved = wf.wait_for_event::<bool>("approved", Duration::from_secs(10)).await?;
            Ok(json!(approved))
        })
    }
    let first = call(approval, &Value::Null, &[], None, 0);
    assert_eq!(first.next, Next::Wait { event: "approved".into(), until_ms: 10_000 });
    let mut journal = first.entries;
    // Not yet resolved: it waits on, adding nothing.
    let again = call(approval, &Value::Null, &journal, None, 5_000);
    assert_eq!(
        (again.entries.len(), again.next.clone()),
        (0, Next::Wait { event: "approved".into(), until_ms: 10_000 })
    );
    let Entry::Event { resolved, value, .. } = &mut journal[0] else { panic!("an event entry") };
    (*resolved, *value) = (true, Some(json!(true)));
    assert_eq!(call(approval, &Value::Null, &journal, None, 6_000).next, Next::Done { result: json!(true) });
    let Entry::Event { value, .. } = &mut journal[0] else { panic!("an event entry") };
    *value = None;
    assert_eq!(
        call(approval, &Value::Null, &journal, None, 10_000).next,
        Next::Done { result: Value::Null },
        "timed out"
    );
}

#[test]
fn a_replay_that_asks_for_other_steps_fails_the_run_naming_both() {
    let journal = vec![
        Entry::Step { name: "charge".into(), value: Some(json!("c")), error: None, attempts: 1 },
        Entry::Step { name: "reserve".into(), value: Some(json!(null)), error: None, attempts: 1 },
    ];
    fn reordered(wf: Workflow, _: Value) -> crate::rt::LocalBoxFuture<'static, Result<Value>> {
        Box::pin(async move {
            let _: String = wf.step("charge", StepOptions::default(), |_| async { Ok("c".to_owned()) }).await?;
            wf.step("ship", StepOptions::default(), |_| async { Ok(()) }).await?;
            Ok(Value::Null)
        })
    }
    let Next::NonDeterministic { error } = call(reordered, &Value::Null, &journal, None, 0).next else {
        panic!("not caught")
    };
    assert_eq!(
        error,
        "non-deterministic: the journal has step `reserve` at position 2 where the code now asks for step `ship`"
    );
    fn shorter(wf: Workflow, _: Value) -> crate::rt::LocalBoxFuture<'static, Result<Value>> {
        Box::pin(async move {
            let _: String = wf.step("charge", StepOptions::default(), |_| async { Ok("c".to_owned()) }).await?;
            Ok(Value::Null)
        })
    }
    let Next::NonDeterministic { error } = call(shorter, &Value::Null, &journal, None, 0).next else {
        panic!("not caught")
    };
    assert!(error.contains("ended after 1 of the journal's 2 entries (the next is step `reserve`)"), "{error}");
}

#[test]
fn an_input_that_does_not_decode_fails_the_run_at_once() {
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code, reason = "only decoded")]
    struct Order {
        cents: u64,
    }
    let call = Call {
        run: "r".into(),
        input: json!({ "cents": "many" }),
        journal: vec![],
        retry: None,
        now_ms: 0,
        cancelling: false,
        lease: None,
    };
    let refused = begin::<Order>(&serde_json::to_vec(&call).expect("encode")).expect_err("refused");
    let outcome: Outcome = serde_json::from_slice(&refused.expect("an outcome")).expect("decode");
    let Next::Failed { error } = outcome.next else { panic!("not failed") };
    assert_eq!(error.status, 400);
    assert!(error.message.contains("the input is not a valid"), "{}", error.message);
}

#[test]
fn a_cancelled_run_replays_to_where_it_was_then_runs_its_compensations_newest_first() {
    thread_local! {
        static UNDONE: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    async fn undo(what: &'static str) -> Result<()> {
        UNDONE.with(|undone| undone.borrow_mut().push(what.to_owned()));
        Ok(())
    }
    fn body(wf: Workflow, _input: Value) -> crate::rt::LocalBoxFuture<'static, Result<Value>> {
        Box::pin(async move {
            wf.step("charge", StepOptions::default(), |_| async { Ok(1) }).await?;
            wf.on_cancel("refund", || undo("refund"));
            wf.step("reserve", StepOptions::default(), |_| async { Ok(2) }).await?;
            wf.on_cancel("release", || undo("release"));
            wf.wait_for_event::<bool>("approved", Duration::from_secs(60)).await?;
            wf.step("ship", StepOptions::default(), |_| async { Ok(3) }).await?;
            Ok(Value::Null)
        })
    }
    let mut journal = Vec::new();
    // Not cancelled: it charges, reserves and waits.
    let waiting = drive(body, Value::Null, &mut journal);
    assert!(matches!(waiting.next, Next::Wait { .. }), "{waiting:?}");
    // Cancelled while it waits: each resume replays to the wait, then the compensations run, newest first, one
    // new one per resume here (no lease); the journaled ones replay and never run again.
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        let outcome = call_as(body, &Value::Null, &journal, None, 2_000, true);
        journal.extend(outcome.entries.clone());
        let ended = matches!(outcome.next, Next::Cancelled { .. });
        outcomes.push(outcome);
        if ended {
            break;
        }
    }
    let names: Vec<String> = journal.iter().map(Entry::describe).collect();
    assert_eq!(
        names,
        [
            "step `charge`",
            "step `reserve`",
            "a wait for event `approved`",
            "step `compensate:release`",
            "step `compensate:refund`"
        ]
    );
    assert_eq!(outcomes.last().map(|o| o.next.clone()), Some(Next::Cancelled { failed: vec![] }), "{outcomes:?}");
    assert_eq!(UNDONE.with(|undone| undone.borrow().clone()), ["release", "refund"], "each compensation ran once");
}

thread_local! {
    static STOCK: Cell<u32> = const { Cell::new(0) };
    static QUOTE: Cell<u32> = const { Cell::new(0) };
}

fn reserve_together(wf: Workflow, _: Value) -> crate::rt::LocalBoxFuture<'static, Result<Value>> {
    Box::pin(async move {
        let fast = StepOptions::default().backoff(Duration::from_millis(10), Duration::from_millis(40));
        let (stock, quote) = wf
            .join(
                "reserve",
                wf.step("stock", fast, |a| async move {
                    STOCK.with(|c| c.set(c.get() + 1));
                    Ok(format!("held ({})", a.idempotency_key))
                }),
                wf.step("quote", fast, |a| async move {
                    QUOTE.with(|c| c.set(c.get() + 1));
                    if a.number < 3 { Err(Error::internal("quotes down")) } else { Ok(a.number) }
                }),
            )
            .await?;
        let total: u32 = wf.step("total", StepOptions::default(), |_| async move { Ok(quote * 10) }).await?;
        Ok(json!({ "stock": stock, "total": total }))
    })
}

#[test]
fn a_join_runs_each_step_once_retries_the_failed_ones_together_and_replays_in_any_order() {
    STOCK.with(|c| c.set(0));
    QUOTE.with(|c| c.set(0));
    let mut journal = Vec::new();
    let outcome = drive(reserve_together, Value::Null, &mut journal);
    assert_eq!(outcome.next, Next::Done { result: json!({ "stock": "held (run-1:stock:1)", "total": 30 }) });
    assert_eq!(STOCK.with(Cell::get), 1, "the step that succeeded is journaled and never runs again");
    assert_eq!(QUOTE.with(Cell::get), 3, "the failed step gets its next attempt each time the join is retried");
    let names: Vec<String> = journal.iter().map(Entry::describe).collect();
    assert_eq!(names, ["step `stock`", "step `quote`", "step `total`"]);
    // The retry names the join, and its backoff is the failed step's.
    let first = call(reserve_together, &Value::Null, &journal[..1], None, 0);
    assert!(
        matches!(&first.next, Next::Retry { name, attempt: 1, at_ms: 10, error } if name == "join:reserve"
            && error.message == "step `quote`: quotes down"),
        "{first:?}"
    );
    // The journal may hold a join's steps in the order they ended: replay finds them by name.
    STOCK.with(|c| c.set(0));
    QUOTE.with(|c| c.set(0));
    let mut swapped = journal.clone();
    swapped.swap(0, 1);
    let again = call(reserve_together, &Value::Null, &swapped, None, 5_000);
    assert_eq!(again.next, outcome.next);
    assert_eq!((STOCK.with(Cell::get), QUOTE.with(Cell::get)), (0, 0), "replay runs nothing");
}

#[test]
fn a_join_whose_steps_are_not_the_journals_fails_the_run_saying_why() {
    // The journal has a step `hold` where the join's steps are now `stock` and `quote`.
    let journal = vec![
        Entry::Step { name: "hold".into(), value: Some(json!("x")), error: None, attempts: 1 },
        Entry::Step { name: "stock".into(), value: Some(json!("held")), error: None, attempts: 1 },
    ];
    let outcome = call(reserve_together, &Value::Null, &journal, None, 0);
    let Next::NonDeterministic { error } = &outcome.next else { panic!("{outcome:?}") };
    assert!(error.contains("step `hold` in join `reserve`"), "{error}");

    fn sleeps_in_a_join(wf: Workflow, _: Value) -> crate::rt::LocalBoxFuture<'static, Result<Value>> {
        Box::pin(async move {
            wf.join("odd", wf.step("a", StepOptions::default(), |_| async { Ok(1) }), async {
                wf.sleep(Duration::from_secs(1)).await.map(|()| 2)
            })
            .await?;
            Ok(Value::Null)
        })
    }
    let a = Entry::Step { name: "a".into(), value: Some(json!(1)), error: None, attempts: 1 };
    let outcome = call(sleeps_in_a_join, &Value::Null, &[a], None, 0);
    let Next::Failed { error } = &outcome.next else { panic!("{outcome:?}") };
    assert!(error.message.contains("join `odd` runs only steps") && error.message.contains("a sleep"), "{error:?}");
}

fn with_a_child(wf: Workflow, input: Value) -> crate::rt::LocalBoxFuture<'static, Result<Value>> {
    Box::pin(async move {
        let label: String = wf.child("label", "make-label", &input).await?;
        Ok(json!({ "label": label }))
    })
}

#[test]
fn a_child_run_starts_once_and_its_end_answers_the_parent() {
    let input = json!({ "order": 7 });
    let first = call(with_a_child, &input, &[], None, 0);
    assert_eq!(
        first.next,
        Next::Child { name: "label".into(), workflow: "make-label".into(), input: input.clone() },
        "the host starts the child with the parent's wait"
    );
    let mut journal = first.entries.clone();
    assert!(matches!(&journal[..], [Entry::Event { name, resolved: false, .. }] if name == "child:label"));
    // Still running: the parent waits on, starting nothing again.
    let waiting = call(with_a_child, &input, &journal, None, 10);
    assert!(matches!(&waiting.next, Next::Wait { event, .. } if event == "child:label"), "{waiting:?}");
    assert!(waiting.entries.is_empty());
    let end = |state: &str, result: Option<Value>, error: Option<&str>| {
        serde_json::to_value(edgefn_manifest::workflow::ChildEnd {
            run: "run-1:label".into(),
            state: state.into(),
            result,
            error: error.map(str::to_owned),
        })
        .expect("encode")
    };
    let Entry::Event { resolved, value, .. } = &mut journal[0] else { panic!("an event entry") };
    (*resolved, *value) = (true, Some(end("done", Some(json!("L-7")), None)));
    assert_eq!(call(with_a_child, &input, &journal, None, 20).next, Next::Done { result: json!({ "label": "L-7" }) });
    let Entry::Event { value, .. } = &mut journal[0] else { panic!("an event entry") };
    *value = Some(end("failed", None, Some("no ink (500)")));
    let failed = call(with_a_child, &input, &journal, None, 20);
    assert_eq!(
        failed.next,
        Next::Failed {
            error: StepError { status: 502, message: "child run `run-1:label` failed: no ink (500)".into() }
        }
    );
}
