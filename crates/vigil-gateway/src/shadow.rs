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
//! to about 1% of a CPU while the CPUs are saturated (see [`pause_after`]): every
//! [`LOOK_EVERY`] copies it runs, it looks at its own wait for a CPU since it last looked
//! (`/proc/thread-self/schedstat`; measured over whole runs: 31–36 times its run time at
//! saturation, about 2 times at a paced load that leaves the CPUs time over).

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
    pub unit_hash: Option<vigil_core::deploy::UnitHash>,
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

/// A look at the thread's times that finds it waited for a CPU at least this many times as
/// long as it ran, since it last looked, finds the CPUs saturated.
const SATURATED_WAIT: u64 = 8;
/// While the CPUs are saturated the thread holds itself to one part in this of a CPU: after
/// a look that finds them so, it pauses for this many times its run time since the look
/// before, less one.
const SATURATED_SHARE: u64 = 100;
/// The longest single pause (so 1% holds for copies of up to about 0.3 ms each, looked at
/// every [`LOOK_EVERY`]; slower models get a larger share).
const LONGEST_PAUSE: Duration = Duration::from_secs(1);
/// The thread looks at its times after every this many copies it runs (in a batch or across
/// small ones: under a light load it rarely looks).
const LOOK_EVERY: u32 = 32;

/// How long the thread pauses after a look that finds it ran for `ran` and waited `waited`
/// for a CPU since the look before (nanoseconds each): nothing unless it waited at least
/// [`SATURATED_WAIT`] times as long as it ran; then long enough that its run time is one part
/// in [`SATURATED_SHARE`] of the time, at most [`LONGEST_PAUSE`]. Copies that come meanwhile
/// fill the queue and are dropped and counted, as they would be anyway while the CPUs are
/// saturated, without the copying.
fn pause_after(ran: u64, waited: u64) -> Duration {
    if ran == 0 || waited < ran.saturating_mul(SATURATED_WAIT) {
        return Duration::ZERO;
    }
    Duration::from_nanos(ran.saturating_mul(SATURATED_SHARE - 1)).min(LONGEST_PAUSE)
}

/// The calling thread's own run time and time spent waiting for a CPU so far, in
/// nanoseconds (Linux, from its `schedstat`, kept open; elsewhere, or if unreadable, `None`,
/// and the thread never pauses), and what they were when it last looked. Tied to the thread
/// that opened it (not `Send`).
struct OwnTimes {
    #[cfg(target_os = "linux")]
    file: Option<std::fs::File>,
    last: Option<(u64, u64)>,
    _thread: std::marker::PhantomData<*const ()>,
}

impl OwnTimes {
    fn open() -> OwnTimes {
        let mut t = OwnTimes {
            #[cfg(target_os = "linux")]
            file: std::fs::File::open("/proc/thread-self/schedstat").ok(),
            last: None,
            _thread: std::marker::PhantomData,
        };
        t.last = t.read();
        t
    }

    /// The run and wait times since the thread last looked (or since it opened them): a
    /// look's wait includes the waits for a CPU after naps and pauses, not only the
    /// preemptions while copies run.
    fn since_last(&mut self) -> Option<(u64, u64)> {
        let (ran, waited) = self.read()?;
        let (ran0, waited0) = self.last.replace((ran, waited)).unwrap_or((ran, waited));
        Some((ran.saturating_sub(ran0), waited.saturating_sub(waited0)))
    }

    #[cfg(target_os = "linux")]
    fn read(&self) -> Option<(u64, u64)> {
        use std::os::unix::fs::FileExt;
        // "run_ns wait_ns timeslices\n": at most 63 bytes. A read at offset 0 of a /proc file
        // makes its text anew.
        let mut buf = [0u8; 96];
        let n = self.file.as_ref()?.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(buf.get(..n)?).ok()?;
        let mut fields = text.split_ascii_whitespace().map(str::parse::<u64>);
        Some((fields.next()?.ok()?, fields.next()?.ok()?))
    }

    #[cfg(not(target_os = "linux"))]
    fn read(&self) -> Option<(u64, u64)> {
        None
    }
}

/// Sleeps for `pause` in naps of at most [`LONGEST_NAP`], keeping the log's rounds written
/// on time; ends early once the gateway is gone.
fn pause_for(pause: Duration, queue: &Arc<ShadowQueue>, log: &mut Option<BackgroundLog>) {
    let until = Instant::now() + pause;
    loop {
        let now = Instant::now();
        if now >= until || Arc::strong_count(queue) == 1 {
            return;
        }
        std::thread::sleep((until - now).min(LONGEST_NAP));
        if let Some(l) = log.as_mut() {
            l.tick();
        }
    }
}

fn run(queue: &Arc<ShadowQueue>, c: &Counters, mut log: Option<BackgroundLog>) {
    crate::idle_priority();
    let mut batch = Vec::with_capacity(SHADOW_QUEUE);
    let mut nap = Duration::from_millis(1);
    let mut times = OwnTimes::open();
    let mut since_look = 0;
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
        let mut jobs = batch.drain(..);
        while let Some(job) = jobs.next() {
            // (A panic while logging the run, never seen, costs that record only.)
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shadow_run(job, c, log.as_mut()))).is_err() {
                c.log_failed.fetch_add(1, Ordering::Relaxed);
            }
            since_look += 1;
            if since_look < LOOK_EVERY {
                continue;
            }
            since_look = 0;
            let Some((ran, waited)) = times.since_last() else { continue };
            let pause = pause_after(ran, waited);
            if !pause.is_zero() {
                c.shadow_pauses.fetch_add(1, Ordering::Relaxed);
                pause_for(pause, queue, &mut log);
                if Arc::strong_count(queue) == 1 {
                    // The gateway went away during the pause: the rest are dropped and counted.
                    c.shadow_dropped.fetch_add(jobs.len() as u64, Ordering::Relaxed);
                    break;
                }
            }
        }
        drop(jobs);
        if let Some(l) = log.as_mut() {
            l.tick();
        }
    }
}

/// A shadow copy's run, counted as ok or failed (faults, panics included, as the live runs'
/// are: see `crate::contained`): the failure's message for its log record.
fn counted_run<T>(c: &Counters, run: impl FnOnce() -> vigil_onnx::Result<T>) -> Result<T, String> {
    match crate::contained(c, run) {
        Ok(o) => {
            c.shadow_ok.fetch_add(1, Ordering::Relaxed);
            Ok(o)
        }
        Err(f) => {
            c.shadow_failed.fetch_add(1, Ordering::Relaxed);
            Err(f.message())
        }
    }
}

fn shadow_run(job: ShadowJob, c: &Counters, log: Option<&mut BackgroundLog>) {
    let start = Instant::now();
    let logged = log.is_some().then(|| job.inputs.clone());
    // A panic in the engine (a defect) is contained here: the thread goes on with the next
    // copy, and the run counts as failed (and as a model fault) and is logged as one.
    let model = &job.served.model;
    let inputs = job.inputs;
    let outputs = counted_run(c, || model.run(inputs));
    if let (Some(log), Some(inputs)) = (log, logged) {
        let rec = LogJob {
            request_id: &job.ids.request_id,
            client_id: job.ids.client_id.as_deref(),
            shadow: true,
            endpoint: &job.endpoint,
            arm: &job.arm,
            served: &job.served,
            assignment: job.how,
            unit_hash: job.unit_hash.as_ref().map(vigil_core::deploy::UnitHash::as_str),
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

    /// A shadow run that panics is contained: counted as failed and as a model fault, its
    /// record's error says so; the next run is counted as usual.
    #[test]
    fn a_panic_in_a_shadow_run_is_contained_and_counted() {
        let c = Counters::default();
        let r = counted_run::<()>(&c, || panic!("an engine defect"));
        assert!(r.unwrap_err().starts_with("model_fault"));
        assert_eq!((c.shadow_failed.load(Ordering::Relaxed), c.model_faults.load(Ordering::Relaxed)), (1, 1));
        assert_eq!(counted_run(&c, || Ok(1)), Ok(1));
        assert_eq!((c.shadow_ok.load(Ordering::Relaxed), c.shadow_failed.load(Ordering::Relaxed)), (1, 1));
    }

    /// Shadow runs that fail (copies the model refuses) are counted as failed, never as
    /// faults of the engine, and the thread goes on with the next copies.
    #[test]
    fn a_failed_shadow_run_is_counted_and_the_thread_goes_on() {
        let c = Arc::new(Counters::default());
        // The copies are queued before the thread starts (an offer that meets the thread
        // holding the queue's lock is dropped, by design).
        let q = Arc::new(ShadowQueue::new());
        let good = || {
            let mut j = job();
            let name = j.served.model.inputs()[0].name.clone();
            j.inputs = vec![(name, vigil_onnx::Tensor::new(vec![1, 8], vigil_onnx::Data::F32(vec![0.25; 8])).unwrap())];
            j
        };
        // No input: refused by the model. Then a good copy, then a refused one again.
        for j in [job(), good(), job(), good()] {
            assert!(q.offer(j));
        }
        let (q2, c2) = (q.clone(), c.clone());
        let thread = std::thread::spawn(move || run(&q2, &c2, None));
        let since = Instant::now();
        while c.shadow_ok.load(Ordering::Relaxed) + c.shadow_failed.load(Ordering::Relaxed) < 4 && since.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!((c.shadow_failed.load(Ordering::Relaxed), c.shadow_ok.load(Ordering::Relaxed)), (2, 2));
        assert_eq!(c.model_faults.load(Ordering::Relaxed), 0, "a refused input is not a fault of the engine");
        drop(q);
        thread.join().unwrap();
    }

    #[test]
    fn the_thread_pauses_only_after_waiting_long_for_a_cpu_and_then_for_99_times_its_run() {
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
    fn on_saturated_cpus_the_shadow_thread_pauses() {
        // Every CPU kept busy at normal priority: the shadow thread (SCHED_IDLE) waits for a
        // CPU far longer than it runs. Copies keep coming until it pauses (or a minute passes).
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
        let since = Instant::now();
        while c.shadow_pauses.load(Ordering::Relaxed) == 0 && since.elapsed() < Duration::from_secs(60) {
            if !q.full() {
                q.offer(job());
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        stop.store(true, Ordering::Relaxed);
        spinners.into_iter().for_each(|t| t.join().unwrap());
        let ran = c.shadow_ok.load(Ordering::Relaxed) + c.shadow_failed.load(Ordering::Relaxed);
        assert!(c.shadow_pauses.load(Ordering::Relaxed) >= 1, "the thread paused ({ran} copies ran)");
        assert!(ran >= u64::from(LOOK_EVERY), "it looks only after {LOOK_EVERY} copies ({ran} ran)");
    }

    #[test]
    fn the_thread_reads_its_own_run_and_wait_times() {
        let mut t = OwnTimes::open();
        if cfg!(target_os = "linux") {
            let (ran0, _) = t.read().expect("Linux has /proc/thread-self/schedstat");
            // Spins until 10 ms more run time are counted (a busy machine may take a while).
            let since = Instant::now();
            let (ran1, waited1) = loop {
                let now = t.read().unwrap();
                if now.0 >= ran0 + 10_000_000 || since.elapsed() > Duration::from_secs(30) {
                    break now;
                }
                std::hint::spin_loop();
            };
            assert!(ran1 >= ran0 + 10_000_000, "spinning is counted as run time ({ran0} -> {ran1})");
            // The wait is the file's second field, as the kernel wrote it.
            let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
            let waited_now: u64 = text.split_ascii_whitespace().nth(1).unwrap().parse().unwrap();
            assert!(waited_now >= waited1 && waited_now - waited1 < 1_000_000_000, "{waited1} then {waited_now}");
            // A look gives what changed since the look before (the first, since the opening).
            let (ran, _) = t.since_last().unwrap();
            assert!(ran >= 10_000_000, "{ran}");
            let (again, _) = t.since_last().unwrap();
            assert!(again < ran, "the second look starts from the first ({again} after {ran})");
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
