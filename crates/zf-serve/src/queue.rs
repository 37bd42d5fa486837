//! The bounded work queue. Analyses are CPU work: they run on tokio's blocking threads, never
//! on the async ones, at most `workers` at a time (one per core by default), and at most
//! `waiting` more wait for a worker. A request beyond that is refused at once
//! ([`WorkQueue::admit`] fails) and the server answers 503 with Retry-After.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::ExploreError;

/// The queue: `workers` slots and room for `waiting` more.
#[derive(Debug, Clone)]
pub struct WorkQueue {
    slots: Arc<Semaphore>,
    admitted: Arc<AtomicUsize>,
    workers: usize,
    waiting: usize,
}

/// A place in the queue, held from admission until the work is done (or the request dropped).
#[derive(Debug)]
pub struct Ticket {
    queue: WorkQueue,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.queue.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

impl WorkQueue {
    /// A queue with `workers` slots (at least one) and room for `waiting` more.
    pub fn new(workers: usize, waiting: usize) -> Self {
        let workers = workers.max(1);
        Self { slots: Arc::new(Semaphore::new(workers)), admitted: Arc::new(AtomicUsize::new(0)), workers, waiting }
    }

    /// Analyses running or waiting now.
    pub fn load(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }

    /// A place in the queue, or [`ExploreError::Busy`] when `workers + waiting` are taken.
    pub fn admit(&self) -> Result<Ticket, ExploreError> {
        let limit = self.workers + self.waiting;
        let taken = self.admitted.fetch_add(1, Ordering::AcqRel);
        let ticket = Ticket { queue: self.clone() };
        if taken >= limit {
            drop(ticket);
            return Err(ExploreError::Busy(format!(
                "{limit} analyses are running or waiting ({} workers); retry shortly",
                self.workers
            )));
        }
        Ok(ticket)
    }
}

impl Ticket {
    /// Runs `work` on a blocking thread once a worker is free, and returns its result. If the
    /// request is dropped while waiting, its place is given back; once started, the work runs to
    /// the end (and still holds its worker).
    pub async fn run<T: Send + 'static>(self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, ExploreError> {
        let permit =
            self.queue.slots.clone().acquire_owned().await.map_err(|e| ExploreError::Internal(e.to_string()))?;
        let out = tokio::task::spawn_blocking(move || {
            let _ticket = self;
            let _permit = permit;
            work()
        })
        .await;
        out.map_err(|e| ExploreError::Internal(format!("the analysis failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_queue_admits_workers_plus_waiting_and_gives_places_back() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let q = WorkQueue::new(1, 2);
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let rx = Arc::new(std::sync::Mutex::new(rx));
            // One running (blocked until told), two waiting: the fourth is refused.
            let mut running = Vec::new();
            for _ in 0..3 {
                let t = q.admit().unwrap();
                let rx = rx.clone();
                running.push(tokio::spawn(t.run(move || rx.lock().unwrap().recv().unwrap())));
            }
            assert_eq!(q.load(), 3);
            let busy = q.admit().unwrap_err();
            assert_eq!(busy.status(), 503);
            assert_eq!(q.load(), 3, "a refusal takes no place");
            for _ in 0..3 {
                tx.send(()).unwrap();
            }
            for r in running {
                r.await.unwrap().unwrap();
            }
            assert_eq!(q.load(), 0, "every place given back");
            // A dropped waiting request gives its place back too.
            let t = q.admit().unwrap();
            drop(t);
            assert_eq!(q.load(), 0);
            assert_eq!(q.admit().unwrap().run(|| 7).await.unwrap(), 7);
        });
    }
}
