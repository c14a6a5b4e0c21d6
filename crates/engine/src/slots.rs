//! How many items of a batch run at once. An item starts only while fewer than `active`
//! items work; an item that waits out a retry's backoff gives its slot to the next item
//! meanwhile. A throttled or failing cloud then slows the items that meet it, not the whole
//! batch: under the fault run's 24 % failing calls, slots used to sit idle for about half of
//! an item's time.
//!
//! An item that comes back from its wait carries on at once, counted as working again.
//! Waiting for a slot there could deadlock: the items holding every slot may be waiting for
//! this one (a once-cell it is initialising, such as the IoT endpoints). So the bound is on
//! starts: an item starts only while fewer than `active` items work (items back from a wait
//! can briefly make it more, and then hold the next starts back), and never more than
//! `STARTED_PER_ACTIVE × active` items of a batch are started and unfinished.
//!
//! The slot travels with the item's future as a task-local value, so the retry layer
//! ([`crate::Paced`]) gives it up without knowing which batch, if any, it serves: calls made
//! outside [`run_items`] (request handlers) simply wait.
//!
//! One level up, the same rule holds for a worker's jobs ([`Jobs`]): a job counts against
//! the worker's concurrency only while something in it works. A job whose unfinished items
//! all wait out backoffs (the tail of a batch under throttling: 19 items done, one asleep)
//! lets the worker take another job meanwhile, up to `STARTED_PER_ACTIVE ×` the concurrency
//! held at once.

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use tokio::sync::Notify;

/// Items started at most, as a multiple of the active ones: bounds the leases and memory a
/// batch holds while many of its items wait.
pub(crate) const STARTED_PER_ACTIVE: usize = 4;

tokio::task_local! {
    static SLOT: Slot;
    static JOB: Arc<Job>;
}

/// A worker's jobs in hand, and how many of them work now (not all waiting inside [`idle`]).
#[derive(Default)]
pub(crate) struct Jobs {
    working: Mutex<usize>,
    /// Signalled when a job stops working (waits, or ends while working).
    paused: Notify,
}

impl Jobs {
    /// Jobs in hand with something working.
    pub(crate) fn working(&self) -> usize {
        *self.working.lock().expect("jobs lock")
    }

    /// One job stopped working: it waits, or ended.
    fn stopped_working(&self) {
        *self.working.lock().expect("jobs lock") -= 1;
        self.paused.notify_one();
    }

    /// Ends when a job stops working after this call (or did since the last such wait).
    pub(crate) async fn paused(&self) {
        self.paused.notified().await;
    }

    /// `job`, counted as working from now on (not from its first poll: the worker decides
    /// what else to take before it polls its jobs again) except while all its work waits
    /// inside [`idle`].
    pub(crate) fn run<F: Future>(self: &Arc<Self>, job: F) -> impl Future<Output = F::Output> + use<F> {
        *self.working.lock().expect("jobs lock") += 1;
        let scoped = JOB.scope(Arc::new(Job { jobs: self.clone(), strands: Mutex::new(1) }), job);
        // Awaited by value, so the job's count goes when it ends: a task-local future keeps
        // its value until it is dropped, and a caller may hold it after it ends.
        #[allow(clippy::redundant_async_block, reason = "drops the scope (and its count) on completion")]
        async move {
            scoped.await
        }
    }
}

/// One job's strands of work that are not waiting: its body, or its items while the body
/// waits for them in [`run_items`].
struct Job {
    jobs: Arc<Jobs>,
    strands: Mutex<usize>,
}

impl Job {
    /// One more strand works; the job works again if none did.
    fn enter(&self) {
        let mut now = self.strands.lock().expect("job lock");
        if *now == 0 {
            *self.jobs.working.lock().expect("jobs lock") += 1;
        }
        *now += 1;
    }

    /// One strand stops working (waits or ends); the job stops if it was the last.
    fn leave(&self) {
        let mut now = self.strands.lock().expect("job lock");
        if *now > 0 {
            *now -= 1;
            if *now == 0 {
                self.jobs.stopped_working();
            }
        }
    }

    fn current() -> Option<Arc<Job>> {
        JOB.try_with(Arc::clone).ok()
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if *self.strands.get_mut().expect("job lock") > 0 {
            self.jobs.stopped_working();
        }
    }
}

/// While alive, the job's body counts as waiting (its items count instead).
struct BodyWaits(Option<Arc<Job>>);

impl BodyWaits {
    fn new() -> Self {
        let job = Job::current();
        if let Some(job) = &job {
            job.leave();
        }
        Self(job)
    }
}

impl Drop for BodyWaits {
    fn drop(&mut self) {
        if let Some(job) = &self.0 {
            job.enter();
        }
    }
}

/// The items of one batch that work now (not waiting inside [`idle`]).
struct Working {
    active: usize,
    now: Mutex<usize>,
    freed: Notify,
    /// The worker's job these items belong to, if any.
    job: Option<Arc<Job>>,
}

impl Working {
    /// Waits until fewer than `active` items work, then counts one more.
    async fn start(&self) {
        loop {
            let freed = self.freed.notified();
            {
                let mut now = self.now.lock().expect("working lock");
                if *now < self.active {
                    self.count_in(&mut now);
                    return;
                }
            }
            freed.await;
        }
    }

    fn enter(&self) {
        self.count_in(&mut self.now.lock().expect("working lock"));
    }

    /// Counts one more item working, here and in its job.
    fn count_in(&self, now: &mut usize) {
        *now += 1;
        if let Some(job) = &self.job {
            job.enter();
        }
    }

    fn leave(&self) {
        *self.now.lock().expect("working lock") -= 1;
        if let Some(job) = &self.job {
            job.leave();
        }
        self.freed.notify_one();
    }
}

/// One item's place in [`Working`]: counted while it works, released when it ends (or is
/// dropped) or waits.
struct Slot {
    working: Arc<Working>,
    counted: Mutex<bool>,
}

impl Slot {
    fn set_counted(&self, counted: bool) {
        let mut current = self.counted.lock().expect("slot lock");
        if *current != counted {
            *current = counted;
            if counted { self.working.enter() } else { self.working.leave() }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.set_counted(false);
    }
}

/// Runs `work` for every item, starting one only while fewer than `active` work (waits
/// inside [`idle`] not counted), and returns the results in completion order.
pub(crate) async fn run_items<T, F, Fut>(items: impl IntoIterator<Item = T>, active: usize, work: F) -> Vec<Fut::Output>
where
    F: Fn(T) -> Fut,
    Fut: Future,
{
    let active = active.max(1);
    let body = BodyWaits::new();
    let working = Arc::new(Working { active, now: Mutex::new(0), freed: Notify::new(), job: body.0.clone() });
    let results = futures::stream::iter(items)
        .map(|item| {
            let working = working.clone();
            let work = work(item);
            async move {
                working.start().await;
                SLOT.scope(Slot { working, counted: Mutex::new(true) }, work).await
            }
        })
        .buffer_unordered(active.saturating_mul(STARTED_PER_ACTIVE))
        .collect()
        .await;
    drop(body);
    results
}

/// Awaits `wait` without counting the current item as working (if it runs inside
/// [`run_items`]), so another item may start meanwhile; counts it again when the wait ends,
/// without waiting for room (see the module's notes).
pub(crate) async fn idle<W: Future>(wait: W) -> W::Output {
    let inside = SLOT.try_with(|slot| slot.set_counted(false)).is_ok();
    if inside {
        let output = wait.await;
        SLOT.with(|slot| slot.set_counted(true));
        return output;
    }
    // A job's body waiting outside a batch (a single-item job's backoff).
    let _body = BodyWaits::new();
    wait.await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn items_waiting_out_a_backoff_let_others_start_and_starts_stay_within_the_active_slots() {
        let starting = Working { active: usize::MAX, now: Mutex::new(0), freed: Notify::new(), job: None };
        let most = std::sync::atomic::AtomicUsize::new(0);
        let started = tokio::time::Instant::now();
        // 8 items, 2 slots: each works 10 ms, waits 100 ms (a backoff), works 10 ms again.
        let mut done = run_items(0..8, 2, |i| {
            let (starting, most) = (&starting, &most);
            async move {
                starting.enter();
                most.fetch_max(*starting.now.lock().unwrap(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                starting.leave();
                idle(tokio::time::sleep(Duration::from_millis(100))).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
                i
            }
        })
        .await;
        done.sort();
        assert_eq!(done, (0..8).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), 2, "never more items starting than slots");
        // Holding slots through the waits, 4 rounds of 120 ms = 480 ms; giving them up, the
        // first halves run back to back (40 ms) and the waits overlap them.
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_millis(200), "the batch took {elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_item_back_from_a_wait_never_waits_for_the_items_that_wait_for_it() {
        // Item 0 initialises a shared cell and meets a backoff inside; the others take every
        // slot and wait for the cell. Item 0 must carry on without a slot to finish it.
        let cell = tokio::sync::OnceCell::new();
        let done = tokio::time::timeout(
            Duration::from_secs(10),
            run_items(0..8, 2, |i| {
                let cell = &cell;
                async move {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    *cell
                        .get_or_init(|| async {
                            idle(tokio::time::sleep(Duration::from_millis(100))).await;
                            42
                        })
                        .await
                        + i
                }
            }),
        )
        .await
        .expect("no deadlock");
        assert_eq!(done.len(), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_counts_as_working_only_while_something_in_it_is_not_waiting() {
        let jobs = Arc::new(Jobs::default());
        // Item 0 meets a 100 ms backoff, then works 10 ms; items 1 and 2 work 10 ms.
        let batch = jobs.run(run_items(0..3, 3, |i| async move {
            if i == 0 {
                idle(tokio::time::sleep(Duration::from_millis(100))).await;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            i
        }));
        assert_eq!(jobs.working(), 1, "a job in hand works before it is first polled");
        tokio::pin!(batch);
        assert!(futures::poll!(&mut batch).is_pending());
        assert_eq!(jobs.working(), 1, "two items work");
        // At 20 ms items 1 and 2 are done and item 0 waits: the job waits, and says so.
        let paused = jobs.paused();
        tokio::pin!(paused);
        assert!(tokio::time::timeout(Duration::from_millis(20), &mut batch).await.is_err());
        assert_eq!(jobs.working(), 0, "the only unfinished item waits out its backoff");
        assert!(futures::poll!(&mut paused).is_ready(), "the worker hears that a job stopped working");
        // Back from the wait, the job works again until it ends.
        assert!(tokio::time::timeout(Duration::from_millis(85), &mut batch).await.is_err());
        assert_eq!(jobs.working(), 1);
        assert_eq!(batch.await.len(), 3);
        assert_eq!(jobs.working(), 0);

        // A job without a batch waits in its body.
        let single = jobs.run(idle(tokio::time::sleep(Duration::from_millis(50))));
        tokio::pin!(single);
        assert!(futures::poll!(&mut single).is_pending());
        assert_eq!(jobs.working(), 0, "a single job's backoff");
        single.await;
        assert_eq!(jobs.working(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn outside_a_batch_idle_just_waits() {
        assert_eq!(idle(async { 7 }).await, 7);
    }
}
