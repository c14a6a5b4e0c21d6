//! The `WorkQueue` conformance suite: at-least-once delivery under leases, acks that only
//! the current lease holder can make, delayed retries, dead letters.
//!
//! ```text
//! ggprov_testkit::work_queue_conformance!(my_queue().await);
//! ```

use std::sync::Arc;
use std::time::Duration;

use ggprov_domain::ports::{Job, WorkQueue};

/// Generates the suite's tests for one adapter; the expression builds a fresh, empty queue.
#[macro_export]
macro_rules! work_queue_conformance {
    ($make:expr) => {
        $crate::work_queue_conformance!(@tests $make;
            enqueued_jobs_are_delivered_once_while_leased,
            acked_jobs_are_gone,
            an_expired_lease_redelivers_the_job,
            an_extended_lease_keeps_the_job_in_hand,
            retried_jobs_come_back_after_their_delay,
            dead_lettered_jobs_leave_the_queue_with_their_reason,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let queue: ::std::sync::Arc<dyn ::ggprov_domain::ports::WorkQueue> = $make;
                $crate::work_queue::$name(queue).await;
            }
        )*
    };
}

fn job(n: u32) -> Job {
    Job { kind: "test".into(), payload: serde_json::json!({"n": n, "text": "ids only"}) }
}

const LONG: Duration = Duration::from_secs(3600);

pub async fn enqueued_jobs_are_delivered_once_while_leased(queue: Arc<dyn WorkQueue>) {
    queue.enqueue(&[job(1), job(2), job(3)]).await.unwrap();
    let first = queue.receive(10, LONG).await.unwrap();
    let mut ns: Vec<u64> = first.iter().map(|d| d.job.payload["n"].as_u64().unwrap()).collect();
    ns.sort_unstable();
    assert_eq!(ns, [1, 2, 3]);
    assert!(first.iter().all(|d| d.attempt == 1 && d.job == job(d.job.payload["n"].as_u64().unwrap() as u32)));
    assert!(queue.receive(10, LONG).await.unwrap().is_empty(), "leased jobs are invisible");
    let depth = queue.depth().await.unwrap();
    assert_eq!((depth.visible, depth.in_flight, depth.dead), (0, 3, 0));
}

pub async fn acked_jobs_are_gone(queue: Arc<dyn WorkQueue>) {
    queue.enqueue(&[job(1)]).await.unwrap();
    let delivery = queue.receive(1, LONG).await.unwrap().pop().unwrap();
    assert!(queue.ack(&delivery.receipt).await.unwrap());
    let depth = queue.depth().await.unwrap();
    assert_eq!((depth.visible, depth.in_flight, depth.dead), (0, 0, 0));
}

pub async fn an_expired_lease_redelivers_the_job(queue: Arc<dyn WorkQueue>) {
    queue.enqueue(&[job(7)]).await.unwrap();
    let first = queue.receive(1, Duration::ZERO).await.unwrap().pop().unwrap();
    let second = queue.receive(1, LONG).await.unwrap().pop().expect("redelivered after the lease expired");
    assert_eq!(second.job, first.job);
    assert_eq!(second.attempt, 2);
    // A worker whose lease expired acks only after finishing the work, so its ack may delete
    // the job or not (SQS does either, and reports success); it must not fail or lose the
    // current holder's ability to finish.
    let _ = queue.ack(&first.receipt).await.unwrap();
    let _ = queue.ack(&second.receipt).await.unwrap();
    assert!(queue.receive(1, Duration::ZERO).await.unwrap().is_empty(), "the job is done once acked by its holder");
}

pub async fn retried_jobs_come_back_after_their_delay(queue: Arc<dyn WorkQueue>) {
    queue.enqueue(&[job(1)]).await.unwrap();
    let first = queue.receive(1, LONG).await.unwrap().pop().unwrap();
    queue.retry_later(&first.receipt, LONG, "throttled").await.unwrap();
    assert!(queue.receive(1, LONG).await.unwrap().is_empty(), "not before its delay");
    // A retry with no delay is visible at once.
    queue.enqueue(&[job(2)]).await.unwrap();
    let second = queue.receive(1, LONG).await.unwrap().pop().unwrap();
    queue.retry_later(&second.receipt, Duration::ZERO, "throttled").await.unwrap();
    let again = queue.receive(1, LONG).await.unwrap().pop().expect("visible again");
    assert_eq!((again.job.payload["n"].as_u64(), again.attempt), (Some(2), 2));
}

pub async fn an_extended_lease_keeps_the_job_in_hand(queue: Arc<dyn WorkQueue>) {
    queue.enqueue(&[job(3)]).await.unwrap();
    let delivery = queue.receive(1, Duration::from_secs(1)).await.unwrap().pop().unwrap();
    assert!(queue.extend_lease(&delivery.receipt, LONG).await.unwrap());
    assert!(queue.receive(1, LONG).await.unwrap().is_empty(), "still leased after the first lease would have ended");
    assert!(queue.ack(&delivery.receipt).await.unwrap());
}

pub async fn dead_lettered_jobs_leave_the_queue_with_their_reason(queue: Arc<dyn WorkQueue>) {
    queue.enqueue(&[job(9)]).await.unwrap();
    let delivery = queue.receive(1, LONG).await.unwrap().pop().unwrap();
    queue.dead_letter(&delivery, "poison: unknown job kind").await.unwrap();
    assert!(queue.receive(1, Duration::ZERO).await.unwrap().is_empty());
    let dead = queue.dead_letters().await.unwrap();
    assert_eq!(dead, vec![(job(9), "poison: unknown job kind".to_owned())]);
    assert_eq!(queue.depth().await.unwrap().dead, 1);
}
