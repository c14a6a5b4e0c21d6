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

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use tokio::sync::Notify;

/// Items started at most, as a multiple of the active ones: bounds the leases and memory a
/// batch holds while many of its items wait.
const STARTED_PER_ACTIVE: usize = 4;

tokio::task_local! {
    static SLOT: Slot;
}

/// The items of one batch that work now (not waiting inside [`idle`]).
struct Working {
    active: usize,
    now: Mutex<usize>,
    freed: Notify,
}

impl Working {
    /// Waits until fewer than `active` items work, then counts one more.
    async fn start(&self) {
        loop {
            let freed = self.freed.notified();
            {
                let mut now = self.now.lock().expect("working lock");
                if *now < self.active {
                    *now += 1;
                    return;
                }
            }
            freed.await;
        }
    }

    fn enter(&self) {
        *self.now.lock().expect("working lock") += 1;
    }

    fn leave(&self) {
        *self.now.lock().expect("working lock") -= 1;
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
    let working = Arc::new(Working { active, now: Mutex::new(0), freed: Notify::new() });
    futures::stream::iter(items)
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
        .await
}

/// Awaits `wait` without counting the current item as working (if it runs inside
/// [`run_items`]), so another item may start meanwhile; counts it again when the wait ends,
/// without waiting for room (see the module's notes).
pub(crate) async fn idle<W: Future>(wait: W) -> W::Output {
    let inside = SLOT.try_with(|slot| slot.set_counted(false)).is_ok();
    let output = wait.await;
    if inside {
        SLOT.with(|slot| slot.set_counted(true));
    }
    output
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn items_waiting_out_a_backoff_let_others_start_and_starts_stay_within_the_active_slots() {
        let starting = Working { active: usize::MAX, now: Mutex::new(0), freed: Notify::new() };
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
    async fn outside_a_batch_idle_just_waits() {
        assert_eq!(idle(async { 7 }).await, 7);
    }
}
