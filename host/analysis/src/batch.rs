//! Batch analysis: each closed HLS segment of a stream in batch mode is queued in the store
//! (durable, bounded per stream: [`queue_for_batch`]); a worker takes queued segments oldest
//! first, decodes each from disk and analyses every Nth frame — slower than live, but nothing is
//! skipped, and a restart picks up where it stopped.
//!
//! Where the jobs come from depends on the bus:
//! - with Redis or Pub/Sub, each job is also pushed to that engine's work queue
//!   ([`bus::SegmentQueue`]), and the workers of every host (`serve --role analyze`) take jobs
//!   from it; the store keeps each job's state, attempts and outcome;
//! - with the in-process bus (one host), the worker claims jobs from the store itself, leased so
//!   that a restarted host runs its unfinished jobs again.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use runtime::{Runtime, World};
use store::{BatchJob, JobStart, Store};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::activity::ComponentActivity;
use crate::output::Output;
use crate::pipelines::StreamPipelines;
use crate::segment_store::{FetchError, SegmentStore};
use crate::{AnalysisStats, analyse_frame, guarded, lock};

/// Segments of one stream that may wait for batch analysis (30 min of 2 s segments); more are
/// refused and counted, so a stream analysis can't keep up with can't fill the disk's database.
pub const BATCH_QUEUE_LIMIT: i64 = 900;
/// How long the batch worker waits on an empty queue before it looks again without being woken:
/// a fallback, for segments queued by other hosts and jobs whose retry time has come
/// ([`BatchWake`] wakes it at once for the segments this host queues).
const BATCH_IDLE: Duration = Duration::from_secs(5);
/// How long the batch worker waits for the work queue to deliver a job before it looks at
/// shutdown again.
const BATCH_QUEUE_WAIT: Duration = Duration::from_secs(2);
/// How long the batch worker waits after the store failed before it tries again.
const BATCH_STORE_PAUSE: Duration = Duration::from_secs(2);
/// Starts of one batch job without an outcome (each stopped by a panic, or by a crash of the
/// process) before it is marked failed: a poison segment never stops the worker for good.
pub const BATCH_ATTEMPTS: i64 = 3;
/// How long a claimed batch job is leased to its host; renewed every third of it while the job
/// runs. A host that crashed or hung loses its jobs to other hosts after this long (a restarted
/// host takes its own back at once).
pub const BATCH_LEASE: Duration = Duration::from_secs(30);
/// How long a job whose results could not all be stored waits before it runs again.
const BATCH_RETRY_DELAY: Duration = Duration::from_secs(10);

/// The batch worker: takes queued segments oldest first, decodes each from disk and analyses every
/// Nth frame, and records the outcome in the store.
pub(crate) struct BatchQueue<'a> {
    pub(crate) runtime: &'a Runtime,
    /// What each stream runs (one pipeline per segment).
    pub(crate) pipelines: &'a StreamPipelines,
    pub(crate) activity: &'a ComponentActivity,
    pub(crate) store: &'a Store,
    pub(crate) stats: &'a AnalysisStats,
    pub(crate) hls_root: &'a Path,
    pub(crate) handle: &'a Handle,
    pub(crate) publisher: &'a bus::Publisher,
    /// Wakes the worker when a segment is queued.
    pub(crate) wake: &'a BatchWake,
    /// This host: claimed jobs are leased to it.
    pub(crate) host: &'a str,
    /// The engine's work queue, when the bus has one: jobs come from it instead of the store.
    pub(crate) jobs: Option<&'a SharedQueue>,
}

/// The batch work shared by hosts: the work queue engine's jobs, and where any host's worker
/// reads their segments.
#[derive(Clone, Debug)]
pub struct SharedQueue {
    pub jobs: bus::SegmentQueue,
    pub segments: SegmentStore,
    /// Where this host's packager writes segments (copied from here to `segments`).
    pub hls_root: PathBuf,
    /// Where a worker keeps a downloaded segment while it analyses it.
    pub scratch: PathBuf,
}

/// How a running job is kept this worker's.
#[derive(Clone, Copy)]
enum Lease<'q> {
    /// Leased to this host in the store.
    Store,
    /// Claimed from the engine's work queue.
    Queue(&'q bus::SegmentQueue, &'q bus::ClaimedJob),
}

/// Wakes the batch worker: a segment was queued (or the host is stopping). A wake while the
/// worker is busy is kept, so it looks at the queue again before it waits.
#[derive(Clone, Default)]
pub struct BatchWake(Arc<(Mutex<bool>, Condvar)>);

impl BatchWake {
    pub fn wake(&self) {
        *lock(&self.0.0) = true;
        self.0.1.notify_all();
    }

    /// Waits for a wake, at most `timeout`, and consumes it; whether there was one.
    pub fn wait(&self, timeout: Duration) -> bool {
        let woken = lock(&self.0.0);
        let (mut woken, _) = self
            .0
            .1
            .wait_timeout_while(woken, timeout, |woken| !*woken)
            .unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *woken)
    }
}

/// How a batch job's run ended, short of a failure of the job itself.
enum SegmentRun {
    /// Analysed: this many frames, all of their results stored.
    Done(u64),
    /// Shutdown interrupted it.
    Stopped,
    /// The lease ran out (this worker was stalled) and another worker claimed the job.
    LeaseLost,
    /// The store failed (a frame's results, or what the job needs to start): hand it back and
    /// run it again later.
    Retry(String),
}

impl BatchQueue<'_> {
    pub(crate) fn run(&self, shutdown: &CancellationToken) {
        if let Some(shared) = self.jobs {
            return self.run_from_queue(shared, shutdown);
        }
        let lease_ms = BATCH_LEASE.as_millis() as i64;
        while !shutdown.is_cancelled() {
            let claim =
                self.store
                    .claim_batch_job(self.host, lease_ms, BATCH_ATTEMPTS, store::now_ms());
            let (job, start) = match self.handle.block_on(claim) {
                Ok(Some(claimed)) => claimed,
                Ok(None) => {
                    let _ = self.wake.wait(BATCH_IDLE);
                    continue;
                }
                Err(e) => {
                    warn!("cannot claim a batch job: {e}");
                    let _ = self.wake.wait(BATCH_STORE_PAUSE);
                    continue;
                }
            };
            match start {
                JobStart::Run { .. } => {}
                JobStart::GaveUp => {
                    self.stats.batch_failed.fetch_add(1, Ordering::Relaxed);
                    warn!(stream = %job.stream_id, segment = job.segment_seq, "batch segment given up after {BATCH_ATTEMPTS} attempts");
                    continue;
                }
                JobStart::NotQueued => continue,
            }
            // A panic hands the job back: it is tried again, up to BATCH_ATTEMPTS times.
            let Some(run) = guarded(self.stats, &job.stream_id, || {
                self.analyse_segment(&job, Lease::Store, shutdown)
            }) else {
                self.release(&job, false, 0);
                continue;
            };
            let outcome = match run {
                Ok(SegmentRun::Done(frames)) => Ok(frames),
                Ok(SegmentRun::Stopped) => {
                    // Shutdown: the next start (or another host) runs it; the attempt is not
                    // counted against the job.
                    self.release(&job, true, 0);
                    return;
                }
                Ok(SegmentRun::LeaseLost) => {
                    self.stats.batch_released.fetch_add(1, Ordering::Relaxed);
                    warn!(stream = %job.stream_id, segment = job.segment_seq, "the batch job's lease ran out and another worker took it over; leaving it to that one");
                    continue;
                }
                Ok(SegmentRun::Retry(why)) => {
                    // Results already stored stay (they are stored once per frame): the next
                    // run fills in what is missing.
                    warn!(stream = %job.stream_id, segment = job.segment_seq, "batch segment to be tried again in {} s: {why}", BATCH_RETRY_DELAY.as_secs());
                    let at = store::now_ms() + BATCH_RETRY_DELAY.as_millis() as i64;
                    self.release(&job, false, at);
                    continue;
                }
                Err(e) => Err(e),
            };
            // Not recorded: the lease runs out and the job runs again.
            let _ = self.record(&job, outcome);
        }
    }

    /// Takes jobs from the engine's work queue until `shutdown`. The store says whether each is
    /// still to be run (a job delivered again after it finished is not) and counts its attempts.
    fn run_from_queue(&self, shared: &SharedQueue, shutdown: &CancellationToken) {
        let jobs = &shared.jobs;
        self.handle.block_on(bus::segments::prepare_worker(jobs));
        info!(engine = jobs.engine_name(), segments = %shared.segments.url(), "batch worker takes jobs from the work queue");
        while !shutdown.is_cancelled() {
            let claimed = match self.handle.block_on(jobs.next(BATCH_QUEUE_WAIT)) {
                Ok(Some(claimed)) => claimed,
                Ok(None) => continue,
                Err(e) => {
                    warn!(
                        engine = jobs.engine_name(),
                        "cannot take a job from the work queue: {e}"
                    );
                    let _ = self.wake.wait(BATCH_STORE_PAUSE);
                    continue;
                }
            };
            let (stream, seq) = (claimed.job.stream.clone(), claimed.job.segment);
            let start = store::RetryPolicy::default().run(
                || {
                    self.store
                        .start_queued_batch_job(&stream, seq, BATCH_ATTEMPTS, store::now_ms())
                },
                |_, _| {
                    self.stats.store_retries.fetch_add(1, Ordering::Relaxed);
                },
            );
            let job = match self.handle.block_on(start) {
                Ok((Some(job), JobStart::Run { .. })) => job,
                Ok((Some(job), JobStart::GaveUp)) => {
                    self.stats.batch_failed.fetch_add(1, Ordering::Relaxed);
                    warn!(stream = %job.stream_id, segment = job.segment_seq, "batch segment given up after {BATCH_ATTEMPTS} attempts");
                    self.acknowledge(shared, claimed);
                    continue;
                }
                Ok((_, _)) => {
                    // Finished already (delivered again), or its stream is gone.
                    self.acknowledge(shared, claimed);
                    continue;
                }
                Err(e) => {
                    warn!(%stream, segment = seq, "cannot start the batch job, handing it back: {e}");
                    self.hand_back(jobs, claimed, BATCH_STORE_PAUSE, shutdown);
                    continue;
                }
            };
            let run = guarded(self.stats, &job.stream_id, || {
                self.analyse_segment(&job, Lease::Queue(jobs, &claimed), shutdown)
            });
            let outcome = match run {
                // A panic: its attempt counts, and the job is delivered again.
                None => {
                    self.stats.batch_released.fetch_add(1, Ordering::Relaxed);
                    self.hand_back(jobs, claimed, Duration::ZERO, shutdown);
                    continue;
                }
                Some(Ok(SegmentRun::Done(frames))) => Ok(frames),
                Some(Ok(SegmentRun::Stopped)) => {
                    // Shutdown: another worker (or this one, after its restart) runs it; the
                    // attempt is not counted against the job.
                    let refund = self.store.refund_batch_attempt(&job);
                    if let Err(e) = self.handle.block_on(refund) {
                        warn!(stream = %job.stream_id, segment = job.segment_seq, "cannot take back the interrupted attempt: {e}");
                    }
                    self.stats.batch_released.fetch_add(1, Ordering::Relaxed);
                    self.hand_back(jobs, claimed, Duration::ZERO, shutdown);
                    return;
                }
                Some(Ok(SegmentRun::LeaseLost)) => {
                    self.stats.batch_released.fetch_add(1, Ordering::Relaxed);
                    warn!(stream = %job.stream_id, segment = job.segment_seq, "another worker took the batch job over; leaving it to that one");
                    continue;
                }
                Some(Ok(SegmentRun::Retry(why))) => {
                    warn!(stream = %job.stream_id, segment = job.segment_seq, "batch segment to be tried again in {} s: {why}", BATCH_RETRY_DELAY.as_secs());
                    self.stats.batch_released.fetch_add(1, Ordering::Relaxed);
                    self.hand_back(jobs, claimed, BATCH_RETRY_DELAY, shutdown);
                    continue;
                }
                Some(Err(e)) => Err(e),
            };
            if self.record(&job, outcome) {
                self.acknowledge(shared, claimed);
            } else {
                // Not recorded: delivered again, it runs again (its results are not duplicated).
                self.hand_back(jobs, claimed, BATCH_STORE_PAUSE, shutdown);
            }
        }
    }

    /// The job is finished (or not to be run): it leaves the work queue, and its segment's
    /// shared copy is deleted.
    fn acknowledge(&self, shared: &SharedQueue, claimed: bus::ClaimedJob) {
        let (stream, seq) = (claimed.job.stream.clone(), claimed.job.segment);
        if let Err(e) = self.handle.block_on(shared.jobs.done(claimed)) {
            warn!(%stream, segment = seq, "cannot acknowledge the batch job (it will be delivered again and skipped): {e}");
        }
        if let Err(e) = self.handle.block_on(shared.segments.remove(&stream, seq)) {
            warn!(%stream, segment = seq, "{e}");
        }
    }

    /// Hands a job back to the work queue after `delay` (cut short by shutdown), so that a
    /// failing store is not retried at full speed.
    fn hand_back(
        &self,
        jobs: &bus::SegmentQueue,
        claimed: bus::ClaimedJob,
        delay: Duration,
        shutdown: &CancellationToken,
    ) {
        if !delay.is_zero() && !shutdown.is_cancelled() {
            let _ = self.wake.wait(delay);
        }
        let (stream, seq) = (claimed.job.stream.clone(), claimed.job.segment);
        if let Err(e) = self.handle.block_on(jobs.again(claimed)) {
            warn!(%stream, segment = seq, "cannot hand the batch job back (it is delivered again when its claim runs out): {e}");
        }
    }

    /// Counts and logs a job's outcome and records it in the store; whether it was recorded.
    fn record(&self, job: &BatchJob, outcome: Result<u64, String>) -> bool {
        match &outcome {
            Ok(frames) => {
                self.stats.batch_done.fetch_add(1, Ordering::Relaxed);
                info!(stream = %job.stream_id, segment = job.segment_seq, frames, "batch segment analysed");
            }
            Err(e) => {
                self.stats.batch_failed.fetch_add(1, Ordering::Relaxed);
                warn!(stream = %job.stream_id, segment = job.segment_seq, "batch segment failed: {e}");
            }
        }
        let finish = store::RetryPolicy::default().run(
            || {
                self.store
                    .finish_batch_job(job, outcome.clone(), store::now_ms())
            },
            |_, _| {
                self.stats.store_retries.fetch_add(1, Ordering::Relaxed);
            },
        );
        match self.handle.block_on(finish) {
            Ok(()) => true,
            Err(e) => {
                // The job runs again; its results are not duplicated.
                warn!(stream = %job.stream_id, segment = job.segment_seq, "cannot record the batch outcome: {e}");
                false
            }
        }
    }

    /// Hands a job back to the queue (see [`Store::release_batch_job`]).
    fn release(&self, job: &BatchJob, refund: bool, retry_at: i64) {
        self.stats.batch_released.fetch_add(1, Ordering::Relaxed);
        let release = store::RetryPolicy::default().run(
            || {
                self.store
                    .release_batch_job(job, self.host, refund, retry_at)
            },
            |_, _| {},
        );
        if let Err(e) = self.handle.block_on(release) {
            warn!(stream = %job.stream_id, segment = job.segment_seq, "cannot hand the batch job back (it is claimable again when its lease runs out): {e}");
        }
    }

    /// Analyses a claimed segment, renewing its lease as it goes; `Err`: why the segment can't
    /// be analysed.
    fn analyse_segment(
        &self,
        job: &BatchJob,
        lease: Lease<'_>,
        shutdown: &CancellationToken,
    ) -> Result<SegmentRun, String> {
        let lookup = store::RetryPolicy::default().run(
            || async {
                let stream = self.store.stream_by_id(&job.stream_id).await?;
                let session = self
                    .store
                    .segment_session(&job.stream_id, job.segment_seq)
                    .await?;
                Ok((stream, session))
            },
            |_, _| {
                self.stats.store_retries.fetch_add(1, Ordering::Relaxed);
            },
        );
        let (stream, session) = match self.handle.block_on(lookup) {
            Ok((Some(stream), session)) => (stream, session),
            Ok((None, _)) => return Err("the stream no longer exists".to_string()),
            Err(e) => return Ok(SegmentRun::Retry(format!("store: {e}"))),
        };
        let out = Output {
            runtime: self.runtime,
            store: self.store,
            publisher: self.publisher,
            handle: self.handle,
            stats: self.stats,
            activity: self.activity,
            tenant: &stream.tenant_id,
            session,
            scene: None,
            rendition: None,
        };
        // One pipeline for the whole segment: the stream's own or its tenant's.
        let pipeline =
            match self
                .pipelines
                .for_batch(self.handle, &stream.tenant_id, &job.stream_id)
            {
                Ok(p) => p,
                Err(e) => return Ok(SegmentRun::Retry(format!("its pipeline: {e}"))),
            };
        let file = hls::segment_file_name(job.segment_seq.max(0) as u64);
        let (segments, scratch) = match self.jobs {
            Some(shared) => (&shared.segments, shared.scratch.as_path()),
            None => (&SegmentStore::Local, self.hls_root),
        };
        let segment = self.handle.block_on(segments.fetch(
            self.hls_root,
            scratch,
            &job.stream_id,
            job.segment_seq,
        ));
        let segment = match segment {
            Ok(segment) => segment,
            Err(FetchError::Gone(why)) => return Err(why),
            Err(FetchError::Store(why)) => return Ok(SegmentRun::Retry(why)),
        };
        // Frame numbers from presentation time, so they agree with the live path's decode count
        // for constant-rate video (RTMP timestamps start at 0).
        let fps = stream
            .video
            .as_ref()
            .map(|v| v.fps)
            .filter(|f| *f > 0.0)
            .unwrap_or(30.0);
        let every = job.every.max(1) as u64;
        let location = segment.path().to_string_lossy();
        let mut source = decode::FileSource::open(&location, 1).map_err(|e| e.to_string())?;
        let mut frames = Vec::new();
        let (mut analysed, mut lost) = (0u64, 0u64);
        let mut renewed = Instant::now();
        while source
            .next_frames(&mut frames)
            .map_err(|e| format!("{file}: {e}"))?
        {
            for mut frame in frames.drain(..) {
                frame.pts_ms -= hls::ts::TS_OFFSET_MS;
                frame.seq = (frame.pts_ms.max(0) as f64 * fps / 1000.0).round() as u64;
                self.stats.frames_decoded.fetch_add(1, Ordering::Relaxed);
                if frame.seq % every != 0 {
                    continue;
                }
                if shutdown.is_cancelled() {
                    return Ok(SegmentRun::Stopped);
                }
                if renewed.elapsed() >= BATCH_LEASE / 3 {
                    match self.renew(job, lease) {
                        Ok(true) => renewed = Instant::now(),
                        Ok(false) => return Ok(SegmentRun::LeaseLost),
                        // Two thirds of the lease are left: the next frame tries again.
                        Err(e) => {
                            warn!(stream = %job.stream_id, segment = job.segment_seq, "cannot renew the batch lease: {e}")
                        }
                    }
                }
                let found = analyse_frame(
                    &job.stream_id,
                    &frame,
                    self.runtime,
                    pipeline.detectors.stage(World::Detector),
                    self.stats,
                );
                let triggers = pipeline.triggers.stage(World::Trigger);
                let selectors = pipeline.selectors.stage(World::Effects);
                let off = &pipeline.effects_off;
                if !out.send(&job.stream_id, &frame, &found, triggers, selectors, off) {
                    lost += 1;
                }
                analysed += 1;
            }
        }
        if lost > 0 {
            return Ok(SegmentRun::Retry(format!(
                "the results of {lost} of {analysed} frames could not be stored"
            )));
        }
        Ok(SegmentRun::Done(analysed))
    }
}

impl BatchQueue<'_> {
    /// Keeps a running job this worker's for another lease; `Ok(false)`: it is no longer its own.
    fn renew(&self, job: &BatchJob, lease: Lease<'_>) -> Result<bool, String> {
        match lease {
            Lease::Store => {
                let until = store::now_ms() + BATCH_LEASE.as_millis() as i64;
                self.handle
                    .block_on(self.store.renew_batch_lease(job, self.host, until))
                    .map_err(|e| e.to_string())
            }
            Lease::Queue(jobs, claimed) => self
                .handle
                .block_on(jobs.renew(claimed))
                .map_err(|e| e.to_string()),
        }
    }
}

/// Queues a closed segment for batch analysis when its stream is in batch mode (the store
/// decides, in one statement, from the stream's mode and its queue's length). With a work queue
/// engine (`jobs`) the job is then pushed to it, for any host's worker; otherwise it is this
/// host's to run (the segment is on its disk).
pub async fn queue_for_batch(
    host: &str,
    store: &Store,
    stats: &AnalysisStats,
    wake: &BatchWake,
    shared: Option<&SharedQueue>,
    stream: &str,
    seq: i64,
) {
    let limit = BATCH_QUEUE_LIMIT;
    let at = store::now_ms();
    let only_here = shared.is_none().then_some(host);
    match store
        .queue_batch_segment_on(only_here, stream, seq, limit, at)
        .await
    {
        Ok(true) => {
            stats.batch_queued.fetch_add(1, Ordering::Relaxed);
            match shared {
                Some(shared) => {
                    let job = BatchJob {
                        stream_id: stream.to_string(),
                        segment_seq: seq,
                        every: 1,
                        queued_at: at,
                    };
                    push_job(store, stats, shared, &job).await;
                }
                None => wake.wake(),
            }
        }
        Ok(false) => {
            if let Ok(Some(a)) = store.analysis(stream).await
                && a.mode == store::AnalysisMode::Batch
            {
                stats.batch_refused.fetch_add(1, Ordering::Relaxed);
                warn!(%stream, segment = seq, "batch queue full ({limit} segments waiting): segment not queued for analysis");
            }
        }
        Err(e) => {
            warn!(%stream, segment = seq, "could not queue the segment for batch analysis: {e}")
        }
    }
}

/// Shares a queued job's segment ([`SegmentStore::put`]) and pushes the job to the work queue
/// engine (a few tries each), then records that it got there. One that does not get there stays
/// queued in the store, and is pushed again by [`push_unpushed_jobs`] when an ingest host starts;
/// one whose segment is gone from this host by then fails.
async fn push_job(store: &Store, stats: &AnalysisStats, shared: &SharedQueue, job: &BatchJob) {
    let (stream, seq) = (&job.stream_id, job.segment_seq);
    let local = shared
        .hls_root
        .join(stream)
        .join(hls::segment_file_name(seq.max(0) as u64));
    if !local.is_file() {
        let why = "the segment was removed before it could be shared with the workers".to_string();
        warn!(%stream, segment = seq, "batch job failed: {why}");
        stats.batch_failed.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = store.finish_batch_job(job, Err(why), store::now_ms()).await {
            warn!(%stream, segment = seq, "cannot record the batch outcome: {e}");
        }
        return;
    }
    let message = bus::SegmentJob::new(stream, seq, job.queued_at);
    // A few tries, 0.2 s then 0.4 s apart: a blip of the engine or the object store.
    let mut pushed = Err(String::new());
    for pause_ms in [0, 200, 400] {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        pushed = async {
            shared.segments.put(&shared.hls_root, stream, seq).await?;
            shared.jobs.push(&message).await.map_err(|e| e.to_string())
        }
        .await;
        if pushed.is_ok() {
            break;
        }
    }
    match pushed {
        Ok(()) => {
            if let Err(e) = store.mark_batch_job_pushed(job, store::now_ms()).await {
                // Pushed again at the next start: a duplicate delivery is skipped.
                warn!(%stream, segment = seq, "cannot record that the batch job was pushed: {e}");
            }
        }
        Err(e) => {
            stats.batch_unpushed.fetch_add(1, Ordering::Relaxed);
            warn!(%stream, segment = seq, engine = shared.jobs.engine_name(), "cannot hand the batch job to the workers; it stays queued in the store and is pushed when an ingest host starts: {e}");
        }
    }
}

/// Pushes the jobs queued in the store that never reached the work queue engine (it was down,
/// or their host stopped in between), a page at a time; how many were pushed. When the engine's
/// queue is new (it lost its data, or this is a new install) every queued job is pushed again.
pub async fn push_unpushed_jobs(store: &Store, stats: &AnalysisStats, shared: &SharedQueue) -> u64 {
    if shared.jobs.is_fresh() {
        match store.forget_pushed_batch_jobs().await {
            Ok(0) => {}
            Ok(n) => warn!(
                jobs = n,
                engine = shared.jobs.engine_name(),
                "the work queue was empty although jobs were pushed to it (did it lose its data?); pushing them again"
            ),
            Err(e) => warn!("cannot list the batch jobs to push again: {e}"),
        }
    }
    let (mut pushed, mut last_first) = (0, None);
    loop {
        let page = match store.unpushed_batch_jobs(256).await {
            Ok(page) => page,
            Err(e) => {
                warn!("cannot list the batch jobs not yet pushed: {e}");
                return pushed;
            }
        };
        if page.is_empty() || page.first() == last_first.as_ref() {
            // Empty, or the same page again: pushed, but not recorded as pushed (the store
            // failed); the next start tries again, and a duplicate delivery is skipped.
            return pushed;
        }
        last_first = page.first().cloned();
        let before = stats.batch_unpushed.load(Ordering::Relaxed);
        for job in &page {
            push_job(store, stats, shared, job).await;
        }
        if stats.batch_unpushed.load(Ordering::Relaxed) != before {
            return pushed; // the engine is down: the next start tries again
        }
        pushed += page.len() as u64;
    }
}

/// How often the work queue's depth is sampled for `/metrics`.
const QUEUE_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Samples the work queue engine's depth into `stats` (for `/metrics`, and autoscaling on it)
/// until `stop`.
pub async fn sample_queue_depth(
    jobs: bus::SegmentQueue,
    stats: Arc<AnalysisStats>,
    stop: CancellationToken,
) {
    let mut failing = false;
    loop {
        match jobs.depth().await {
            Ok(Some(depth)) => {
                stats.queue.set(&depth);
                failing = false;
            }
            // Pub/Sub: the backlog is the subscription's Cloud Monitoring metric.
            Ok(None) => return,
            Err(e) => {
                if !failing {
                    warn!(
                        engine = jobs.engine_name(),
                        "cannot read the work queue's depth: {e}"
                    );
                }
                failing = true;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(QUEUE_SAMPLE_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queued segment wakes a waiting worker; a wake while it is busy is kept for its next
    /// wait; without one it waits out its timeout.
    #[test]
    fn the_batch_worker_is_woken_by_a_queued_segment_not_by_its_clock() {
        let wake = BatchWake::default();
        assert!(!wake.wait(Duration::from_millis(10)), "nothing queued");
        wake.wake();
        assert!(
            wake.wait(Duration::from_secs(60)),
            "a wake while busy is kept"
        );
        assert!(!wake.wait(Duration::from_millis(10)), "and consumed");
        std::thread::scope(|s| {
            let waiter = s.spawn(|| wake.wait(Duration::from_secs(60)));
            while !waiter.is_finished() {
                wake.wake();
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(waiter.join().unwrap(), "woken, not timed out");
        });
    }
}
