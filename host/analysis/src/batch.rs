//! Batch analysis: each closed HLS segment of a stream in batch mode is queued in the store
//! (durable, bounded per stream: [`queue_for_batch`]); a worker claims queued segments oldest
//! first (leased, so a dead host's jobs go to another), decodes each from disk and analyses
//! every Nth frame — slower than live, but nothing is skipped, and a restart picks up where it
//! stopped.

use std::path::Path;
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
use crate::{AnalysisStats, analyse_frame, guarded, lock};

/// Segments of one stream that may wait for batch analysis (30 min of 2 s segments); more are
/// refused and counted, so a stream analysis can't keep up with can't fill the disk's database.
pub const BATCH_QUEUE_LIMIT: i64 = 900;
/// How long the batch worker waits on an empty queue before it looks again without being woken:
/// a fallback, for segments queued by other hosts and jobs whose retry time has come
/// ([`BatchWake`] wakes it at once for the segments this host queues).
const BATCH_IDLE: Duration = Duration::from_secs(5);
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
                self.analyse_segment(&job, shutdown)
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
                        .finish_batch_job(&job, outcome.clone(), store::now_ms())
                },
                |_, _| {
                    self.stats.store_retries.fetch_add(1, Ordering::Relaxed);
                },
            );
            if let Err(e) = self.handle.block_on(finish) {
                // The lease runs out and the job runs again; its results are not duplicated.
                warn!(stream = %job.stream_id, segment = job.segment_seq, "cannot record the batch outcome: {e}");
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
        let path = self.hls_root.join(&job.stream_id).join(&file);
        if !path.is_file() {
            return Err(format!(
                "{file} is no longer on disk (retention removed it before its turn)"
            ));
        }
        // Frame numbers from presentation time, so they agree with the live path's decode count
        // for constant-rate video (RTMP timestamps start at 0).
        let fps = stream
            .video
            .as_ref()
            .map(|v| v.fps)
            .filter(|f| *f > 0.0)
            .unwrap_or(30.0);
        let every = job.every.max(1) as u64;
        let location = path.to_string_lossy();
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
                    let until = store::now_ms() + BATCH_LEASE.as_millis() as i64;
                    match self
                        .handle
                        .block_on(self.store.renew_batch_lease(job, self.host, until))
                    {
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
                if !out.send(&job.stream_id, &frame, &found, triggers) {
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

/// Queues a closed segment for batch analysis when its stream is in batch mode (the store
/// decides, in one statement, from the stream's mode and its queue's length).
pub async fn queue_for_batch(
    host: &str,
    store: &Store,
    stats: &AnalysisStats,
    wake: &BatchWake,
    stream: &str,
    seq: i64,
) {
    let limit = BATCH_QUEUE_LIMIT;
    match store
        .queue_batch_segment_on(Some(host), stream, seq, limit, store::now_ms())
        .await
    {
        Ok(true) => {
            stats.batch_queued.fetch_add(1, Ordering::Relaxed);
            wake.wake();
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
