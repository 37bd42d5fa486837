//! Long analyses as jobs: the page starts one (an occlusion map), polls its progress and may
//! cancel it. At most [`JOBS_KEPT`] are remembered; starting one more drops the oldest and
//! stops it if it still runs.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::explorer::OcclusionView;
use crate::limits::JOBS_KEPT;

/// Where a job is.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// Running.
    Running,
    /// Finished, with its result.
    Done { result: OcclusionView },
    /// Failed, with the reason.
    Failed { error: String },
    /// Stopped on request.
    Cancelled,
}

/// One job: its progress, its stop flag and its state.
#[derive(Debug)]
pub struct Job {
    done: AtomicUsize,
    total: AtomicUsize,
    cancel: AtomicBool,
    state: Mutex<JobState>,
}

/// A job as the page polls it.
#[derive(Clone, Debug, Serialize)]
pub struct JobReport {
    pub id: u64,
    pub done: usize,
    pub total: usize,
    #[serde(flatten)]
    pub state: JobState,
}

impl Job {
    fn new() -> Self {
        Self {
            done: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            cancel: AtomicBool::new(false),
            state: Mutex::new(JobState::Queued),
        }
    }

    /// Sets the state.
    pub fn set(&self, state: JobState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// Asks the job to stop after its current batch (a queued job does not start).
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Release);
    }

    /// Whether a stop was asked for.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }

    /// The steer callback for the analysis: records progress, breaks once cancelled.
    pub fn steer(&self) -> impl FnMut(usize, usize) -> ControlFlow<()> + '_ {
        move |done, total| {
            self.done.store(done, Ordering::Release);
            self.total.store(total, Ordering::Release);
            if self.cancelled() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }

    fn report(&self, id: u64) -> JobReport {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        JobReport { id, done: self.done.load(Ordering::Acquire), total: self.total.load(Ordering::Acquire), state }
    }
}

/// The remembered jobs.
#[derive(Debug, Default)]
pub struct Jobs {
    next: AtomicU64,
    list: Mutex<VecDeque<(u64, Arc<Job>)>>,
}

impl Jobs {
    /// A new queued job and its id; the oldest is dropped (and stopped) past [`JOBS_KEPT`].
    pub fn start(&self) -> (u64, Arc<Job>) {
        let id = self.next.fetch_add(1, Ordering::AcqRel) + 1;
        let job = Arc::new(Job::new());
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.push_back((id, job.clone()));
        while list.len() > JOBS_KEPT {
            if let Some((_, old)) = list.pop_front() {
                old.cancel();
            }
        }
        (id, job)
    }

    fn find(&self, id: u64) -> Option<Arc<Job>> {
        self.list.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(i, _)| *i == id).map(|(_, j)| j.clone())
    }

    /// Job `id`'s report, if it is remembered.
    pub fn report(&self, id: u64) -> Option<JobReport> {
        self.find(id).map(|j| j.report(id))
    }

    /// Cancels job `id`; its report, if it is remembered.
    pub fn cancel(&self, id: u64) -> Option<JobReport> {
        self.find(id).map(|j| {
            j.cancel();
            j.report(id)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn jobs_report_progress_stop_when_cancelled_and_stay_bounded() {
        let jobs = Jobs::default();
        let (id, job) = jobs.start();
        {
            let mut steer = job.steer();
            assert!(steer(3, 10).is_continue());
            assert_eq!((jobs.report(id).unwrap().done, jobs.report(id).unwrap().total), (3, 10));
            jobs.cancel(id).unwrap();
            assert!(steer(4, 10).is_break(), "a cancelled job stops at its next batch");
        }
        job.set(JobState::Cancelled);
        assert!(matches!(jobs.report(id).unwrap().state, JobState::Cancelled));
        assert!(jobs.report(id + 1).is_none() && jobs.cancel(999).is_none());
        // Past the limit, the oldest is dropped and told to stop.
        let (first, first_job) = jobs.start();
        for _ in 0..JOBS_KEPT {
            jobs.start();
        }
        assert!(jobs.report(first).is_none());
        assert!(first_job.cancelled());
    }
}
