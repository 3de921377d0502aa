//! __CRATE__: an HTTP endpoint that queues jobs, and the consumer that works them off, at least once, with retries
//! and a dead-letter queue. `edgefn deploy .` builds and deploys both; `cargo test` runs them natively.

use edgefn::prelude::*;
use serde::{Deserialize, Serialize};

/// The queue between the two functions.
pub const QUEUE: &str = "__QUEUE__";

/// A unit of work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    pub task: String,
}

/// `POST /__ROUTE__/jobs` with a JSON job: stored durably before the 202.
#[function(trigger = http("/__ROUTE__/jobs", method = "POST"))]
fn submit(req: Request) -> Result<Response> {
    let job: Job = req.json()?;
    let message_id = edgefn::queue::send(QUEUE, &job)?;
    Ok(Response::json(&serde_json::json!({ "queued": message_id, "job": job.id }))?.with_status(202))
}

/// Works off up to 10 jobs at a time. A job without a task can never succeed: it goes to the dead-letter queue
/// (`__QUEUE__-dlq`) at once; anything that fails otherwise is retried, up to 3 times.
#[function(trigger = queue("__QUEUE__", batch_size = 10, max_retries = 3))]
fn work(batch: Batch<Job>) -> Result<()> {
    for message in &batch {
        let job = message.body();
        if job.task.trim().is_empty() {
            message.dead_letter(format!("job {} has no task", job.id));
            continue;
        }
        println!("job {}: {}", job.id, job.task);
        message.ack();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgefn::queue::Settled;
    use edgefn::testing;

    #[test]
    fn submitting_a_job_queues_it() {
        let job = Job { id: 1, task: "resize".into() };
        let response = testing::call(testing::post_json("/__ROUTE__/jobs", &job));
        assert_eq!(response.status(), 202);
        let sent = testing::outbox();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].kind, sent[0].name.as_str()), ("queue", QUEUE));
        assert_eq!(serde_json::from_slice::<Job>(&sent[0].body).unwrap(), job);
    }

    #[test]
    fn jobs_are_acked_and_a_job_without_a_task_is_dead_lettered() {
        let batch = testing::batch(&[Job { id: 1, task: "resize".into() }, Job { id: 2, task: " ".into() }]);
        assert!(work(batch).is_ok());
        assert_eq!(
            testing::settlements(),
            vec![("1".to_owned(), Settled::Ack), ("2".to_owned(), Settled::DeadLetter("job 2 has no task".into()))]
        );
    }
}
