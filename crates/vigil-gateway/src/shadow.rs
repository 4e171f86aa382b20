//! Shadow runs: copies of live requests for shadow arms, run on a thread of their own that only
//! gets CPU time no live request wants.
//!
//! The live path must never wait for this thread, even while the scheduler has put it aside:
//! - Its queue is a vector behind a mutex that request threads only `try_lock` (a short spin,
//!   then the copy is dropped and counted). A shadow thread that is descheduled while holding
//!   the lock costs dropped copies, never a waiting request. (A ring-buffer channel is not
//!   enough: when it is full, a sender can spin on the slot a descheduled receiver is reading;
//!   with the receiver at idle priority that was a 230 ms p99 on the bench.)
//! - Its log records go to segment files it writes and syncs itself
//!   ([`crate::spool::BackgroundLog`]), not through the writer's buffers: an idle-priority
//!   thread descheduled while holding one of their locks would make the writer wait for it.
//!
//! On Linux the thread runs under `SCHED_IDLE`: when live requests keep the CPUs busy it gets
//! (almost) no time, its queue fills and copies are dropped and counted; when they leave time
//! over, shadows use it.
//!
//! `SCHED_IDLE` alone was not enough at saturation: the thread still got a CPU between live
//! requests (it ran 39% of the copies on the bench) and the primary's p99 rose by about a
//! fifth, although the thread took under 1 µs a request. Held to 1% of a CPU by a cgroup quota
//! in an experiment, the rise fell to what routing alone costs. So the thread now holds itself
//! to about 1% of a CPU while the CPUs are saturated (see [`pause_after`]): it tells by its own
//! wait for a CPU, read from `/proc/thread-self/schedstat` (measured while running copies:
//! 31–36 times its run time at saturation, about 2 times at a paced load that leaves the CPUs
//! time over, where every copy still runs).

use crate::catalog::Served;
use crate::spool::{BackgroundLog, LogJob};
use crate::{Counters, RequestIds};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, Instant};

/// How many shadow copies may wait; more are dropped and counted.
pub const SHADOW_QUEUE: usize = 1024;

/// A copy of a request for a shadow arm.
pub(crate) struct ShadowJob {
    pub served: Arc<Served>,
    pub inputs: Vec<(String, vigil_onnx::Tensor)>,
    pub endpoint: Arc<str>,
    pub arm: Arc<str>,
    pub ids: RequestIds,
    pub how: &'static str,
    pub bucket: Option<u32>,
    pub unit_hash: Option<String>,
    pub feature_statuses: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

/// The bounded queue between request threads and the shadow thread.
pub(crate) struct ShadowQueue {
    jobs: Mutex<Vec<ShadowJob>>,
    /// Copies waiting (read without the lock, to skip copying a request when the queue is full).
    waiting: AtomicUsize,
}

impl ShadowQueue {
    fn new() -> Self {
        ShadowQueue { jobs: Mutex::new(Vec::with_capacity(SHADOW_QUEUE)), waiting: AtomicUsize::new(0) }
    }

    /// Whether a copy offered now would be dropped.
    pub fn full(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) >= SHADOW_QUEUE
    }

    /// Queues a copy; `false` (dropped) if the queue is full or its lock stays taken for more
    /// than a short spin. Never waits.
    pub fn offer(&self, job: ShadowJob) -> bool {
        if self.full() {
            return false;
        }
        for _ in 0..64 {
            let mut jobs = match self.jobs.try_lock() {
                Ok(g) => g,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    std::hint::spin_loop();
                    continue;
                }
            };
            if jobs.len() >= SHADOW_QUEUE {
                return false;
            }
            // Within the capacity reserved up front: no allocation under the lock.
            jobs.push(job);
            self.waiting.store(jobs.len(), Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Moves the waiting copies into `into` (empty, with the queue's capacity) and leaves its
    /// allocation in their place.
    fn take(&self, into: &mut Vec<ShadowJob>) {
        let mut jobs = self.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::swap(&mut *jobs, into);
        self.waiting.store(0, Ordering::Relaxed);
    }
}

/// Starts the shadow thread; it ends once the returned queue is dropped (copies still waiting
/// then are dropped and counted) and seals its last log segment.
pub(crate) fn start(counters: Arc<Counters>, log: Option<BackgroundLog>) -> Arc<ShadowQueue> {
    let queue = Arc::new(ShadowQueue::new());
    let q = queue.clone();
    let spawned = std::thread::Builder::new().name("vigil-shadow".into()).spawn(move || run(&q, &counters, log));
    if let Err(e) = spawned {
        // Every copy is then dropped and counted: the queue fills and nothing drains it.
        eprintln!("vigil gateway: the shadow thread could not be started: {e}");
    }
    queue
}

/// Idle naps grow to this (the thread polls: a request never wakes it).
const LONGEST_NAP: Duration = Duration::from_millis(20);

/// A batch before which (since the thread last looked) it waited for a CPU at least this many
/// times as long as it ran came while the CPUs were saturated.
const SATURATED_WAIT: u64 = 8;
/// While the CPUs are saturated the thread holds itself to one part in this of a CPU: after
/// a batch it pauses for this many times its run time, less one.
const SATURATED_SHARE: u64 = 100;
/// The longest pause (the thread looks again at least this often).
const LONGEST_PAUSE: Duration = Duration::from_secs(1);
/// Batches smaller than this are run without looking at the thread's times (a light load).
const MEASURED_BATCH: usize = 32;

/// How long the thread pauses after a batch, when since it last looked it ran for `ran` and
/// waited `waited` for a CPU (nanoseconds each): nothing unless it waited at least [`SATURATED_WAIT`] times as long as
/// it ran; then long enough that its run time is one part in [`SATURATED_SHARE`] of the
/// time, at most [`LONGEST_PAUSE`]. Copies that come meanwhile fill the queue and are dropped
/// and counted, as they would be anyway while the CPUs are saturated, without the copying.
fn pause_after(ran: u64, waited: u64) -> Duration {
    if ran == 0 || waited < ran.saturating_mul(SATURATED_WAIT) {
        return Duration::ZERO;
    }
    Duration::from_nanos(ran.saturating_mul(SATURATED_SHARE - 1)).min(LONGEST_PAUSE)
}

/// The calling thread's own run time and time spent waiting for a CPU so far, in
/// nanoseconds (Linux, from its `schedstat` kept open; `None` elsewhere or if unreadable).
struct OwnTimes {
    file: Option<std::fs::File>,
    buf: [u8; 96],
}

impl OwnTimes {
    fn open() -> OwnTimes {
        OwnTimes { file: std::fs::File::open("/proc/thread-self/schedstat").ok(), buf: [0; 96] }
    }

    fn read(&mut self) -> Option<(u64, u64)> {
        use std::os::unix::fs::FileExt;
        let n = self.file.as_ref()?.read_at(&mut self.buf, 0).ok()?;
        let text = std::str::from_utf8(self.buf.get(..n)?).ok()?;
        let mut fields = text.split_ascii_whitespace().map(str::parse::<u64>);
        Some((fields.next()?.ok()?, fields.next()?.ok()?))
    }
}

fn run(queue: &Arc<ShadowQueue>, c: &Counters, mut log: Option<BackgroundLog>) {
    crate::idle_priority();
    let mut batch = Vec::with_capacity(SHADOW_QUEUE);
    let mut nap = Duration::from_millis(1);
    let mut times = OwnTimes::open();
    // The thread's times when it last looked: a batch's wait counts from there, so that it
    // includes the wait for a CPU after a nap or a pause, not only the preemptions while the
    // batch runs.
    let mut last = times.read();
    loop {
        // Read before taking: once the gateway is gone no copy can arrive after the take.
        let gone = Arc::strong_count(queue) == 1;
        queue.take(&mut batch);
        if gone {
            // Copies still waiting are not run at shutdown (that would make the spool's last
            // pass wait for an idle-priority thread): dropped and counted.
            c.shadow_dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
            return;
        }
        if batch.is_empty() {
            if let Some(l) = log.as_mut() {
                l.tick();
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(LONGEST_NAP);
            continue;
        }
        nap = Duration::from_millis(1);
        let measured = batch.len() >= MEASURED_BATCH;
        for job in batch.drain(..) {
            shadow_run(job, c, log.as_mut());
        }
        if let Some(l) = log.as_mut() {
            l.tick();
        }
        if measured && let Some((ran1, waited1)) = times.read() {
            let (ran0, waited0) = last.unwrap_or((ran1, waited1));
            last = Some((ran1, waited1));
            let pause = pause_after(ran1.saturating_sub(ran0), waited1.saturating_sub(waited0));
            if !pause.is_zero() {
                c.shadow_pauses.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(pause);
            }
        }
    }
}

fn shadow_run(job: ShadowJob, c: &Counters, log: Option<&mut BackgroundLog>) {
    let start = Instant::now();
    let logged = log.is_some().then(|| job.inputs.clone());
    let outputs = match job.served.model.run(job.inputs) {
        Ok(o) => {
            c.shadow_ok.fetch_add(1, Ordering::Relaxed);
            Ok(o)
        }
        Err(e) => {
            c.shadow_failed.fetch_add(1, Ordering::Relaxed);
            Err(e.message().to_owned())
        }
    };
    if let (Some(log), Some(inputs)) = (log, logged) {
        let rec = LogJob {
            request_id: &job.ids.request_id,
            client_id: job.ids.client_id.as_deref(),
            shadow: true,
            endpoint: &job.endpoint,
            arm: &job.arm,
            served: &job.served,
            assignment: job.how,
            unit_hash: job.unit_hash.as_deref(),
            bucket: job.bucket,
            at: vigil_core::ids::Clock::now(&vigil_core::ids::SystemClock),
            latency_us: start.elapsed().as_micros() as u64,
            lookup_us: None,
            inputs: &inputs,
            outputs: outputs.as_deref().map_err(String::as_str),
            feature_statuses: job.feature_statuses.as_ref(),
        };
        // A shadow record is never worth refusing anything for: a full spool drops it (counted).
        log.write(&rec);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn job() -> ShadowJob {
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../vigil-onnx/tests/fixtures/lr_binary.onnx")).unwrap();
        let model = vigil_onnx::Model::load(&bytes).unwrap();
        let served = Arc::new(Served { name: "m".into(), version: "1.0.0".into(), version_id: "mv_1".into(), digest: "ab".into(), input_names: vec![], columns: vec![], columns_named: false, model });
        let ids = RequestIds { request_id: "r".into(), client_id: None };
        ShadowJob { served, inputs: vec![], endpoint: "e".into(), arm: "s".into(), ids, how: "keyed", bucket: Some(1), unit_hash: None, feature_statuses: None }
    }

    #[test]
    fn the_thread_pauses_only_after_a_batch_it_waited_long_for_and_then_for_99_times_its_run() {
        // A CPU to spare (a paced load waits about twice its run time): no pause.
        assert_eq!(pause_after(2_000_000, 4_000_000), Duration::ZERO);
        assert_eq!(pause_after(2_000_000, 15_999_999), Duration::ZERO);
        // Saturated (measured: 31-36 times): one part in a hundred of a CPU.
        assert_eq!(pause_after(2_000_000, 16_000_000), Duration::from_millis(198));
        assert_eq!(pause_after(1_800_000, 60_000_000), Duration::from_micros(178_200));
        // Never longer than a second, and nothing for a batch that took no measurable time.
        assert_eq!(pause_after(50_000_000, 2_000_000_000), LONGEST_PAUSE);
        assert_eq!(pause_after(0, 1_000_000), Duration::ZERO);
        assert_eq!(pause_after(u64::MAX, u64::MAX), LONGEST_PAUSE);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn on_saturated_cpus_the_shadow_thread_pauses_after_a_batch() {
        // Every CPU kept busy at normal priority: the shadow thread (SCHED_IDLE) waits for a
        // CPU far longer than it runs.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinners: Vec<_> = (0..std::thread::available_parallelism().map_or(2, |n| n.get()))
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        let c = Arc::new(Counters::default());
        let q = start(c.clone(), None);
        let n = 2 * MEASURED_BATCH as u64;
        let mut offered = 0;
        while offered < n {
            if q.offer(job()) {
                offered += 1;
            }
        }
        let ran = || c.shadow_ok.load(Ordering::Relaxed) + c.shadow_failed.load(Ordering::Relaxed);
        let since = Instant::now();
        while ran() < n && since.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(5));
        }
        // The pause follows the batch: give it the time to be counted.
        while c.shadow_pauses.load(Ordering::Relaxed) == 0 && since.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        spinners.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(ran(), n, "every queued copy ran");
        assert!(c.shadow_pauses.load(Ordering::Relaxed) >= 1, "the thread paused after a batch it waited long for");
    }

    #[test]
    fn the_thread_reads_its_own_run_and_wait_times() {
        let mut t = OwnTimes::open();
        if cfg!(target_os = "linux") {
            let (ran0, waited0) = t.read().expect("Linux has /proc/thread-self/schedstat");
            let spin = Instant::now();
            while spin.elapsed() < Duration::from_millis(20) {
                std::hint::spin_loop();
            }
            let (ran1, waited1) = t.read().unwrap();
            assert!(ran1 >= ran0 + 10_000_000, "20 ms of spinning is counted as run time ({ran0} -> {ran1})");
            assert!(waited1 >= waited0);
        } else {
            assert_eq!(t.read(), None);
        }
    }

    #[test]
    fn offering_never_waits_for_a_descheduled_shadow_thread() {
        let q = Arc::new(ShadowQueue::new());
        let template = job();
        let served = template.served.clone();
        // The shadow thread holds the lock (as if it were descheduled in the middle of `take`):
        // an offer gives up and the copy is dropped.
        let held = q.jobs.lock().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let q2 = q.clone();
        let s2 = served.clone();
        std::thread::spawn(move || {
            let mut j = job();
            j.served = s2;
            tx.send(q2.offer(j)).unwrap();
        });
        let offered = rx.recv_timeout(Duration::from_secs(10)).expect("an offer must not wait for the lock");
        assert!(!offered, "the copy is dropped while the lock is taken");
        drop(held);
        // Free: copies queue up to the bound, then are dropped.
        for i in 0..SHADOW_QUEUE {
            assert!(q.offer(job()), "copy {i} fits");
        }
        assert!(q.full());
        assert!(!q.offer(job()));
        let mut batch = Vec::with_capacity(SHADOW_QUEUE);
        q.take(&mut batch);
        assert_eq!(batch.len(), SHADOW_QUEUE);
        assert!(!q.full());
        assert!(q.offer(template));
    }
}
