//! The batch work queue: closed segments of streams in batch mode, taken by analysis workers on
//! any host (`serve --role analyze`), on the engine that `--bus` names.
//!
//! - **Redis**: one Stream, `ma:jobs:segments`, read by the consumer group `analyze`
//!   (`XREADGROUP … >`, one entry at a time). A worker acknowledges and deletes an entry
//!   (`XACK` + `XDEL`) once its outcome is stored. An entry whose worker died stays pending; when
//!   it has been idle for the lease, another worker takes it over (`XAUTOCLAIM`). A worker renews
//!   its claim while it runs the job (`XCLAIM … JUSTID` resets the idle time), after checking that
//!   the entry is still its own (`XPENDING`).
//! - **Pub/Sub**: the topic `{prefix}-segments` and one subscription, `{prefix}-segments-analyze`,
//!   shared by every worker. The client extends the ack deadline while a job runs; a message
//!   whose worker died is redelivered when its deadline passes; `nack` hands one back at once.
//!
//! Delivery is at least once: a job may be delivered again after a worker stalled or died. The
//! store keeps each job's state and attempts, and stores a frame's results once, so a job run
//! twice never stores its results twice. The in-process bus has no work queue: a single host uses
//! the store's own leased queue.

use std::sync::Arc;
use std::time::Duration;

use google_cloud_pubsub::client::{Publisher, Subscriber, SubscriptionAdmin, TopicAdmin};
use google_cloud_pubsub::model::Message;
use google_cloud_pubsub::subscriber::handler::Handler;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamClaimOptions, StreamId,
    StreamPendingCountReply, StreamReadOptions, StreamReadReply,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, mpsc};
use tracing::{info, warn};

use crate::{BusConfig, BusError, Result};

/// The Redis Stream that holds the jobs.
pub const REDIS_JOBS_KEY: &str = "ma:jobs:segments";
/// The consumer group of the analysis workers.
pub const REDIS_GROUP: &str = "analyze";
/// A job message larger than this is not one of ours: refused before it is parsed.
const MAX_JOB_BYTES: usize = 4096;
/// A consumer that has held nothing for this long is removed from the group at a worker's start
/// (workers on Kubernetes get a new name with each pod).
const IDLE_CONSUMER: Duration = Duration::from_secs(3600);

/// One closed segment to analyse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentJob {
    /// Message version.
    pub v: u32,
    pub stream: String,
    pub segment: i64,
    /// When it was queued (Unix ms): its age in the queue is measured from here.
    pub queued_at: i64,
}

impl SegmentJob {
    pub fn new(stream: &str, segment: i64, queued_at: i64) -> Self {
        Self {
            v: 1,
            stream: stream.to_string(),
            segment,
            queued_at,
        }
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a job message, bounded in size; it may come from anyone who can write to the queue.
    pub fn from_json(data: &[u8]) -> Result<Self> {
        if data.len() > MAX_JOB_BYTES {
            return Err(BusError::Message(format!(
                "a job message of {} bytes (at most {MAX_JOB_BYTES})",
                data.len()
            )));
        }
        let job: Self =
            serde_json::from_slice(data).map_err(|e| BusError::Message(format!("job: {e}")))?;
        if job.v != 1 {
            return Err(BusError::Message(format!("job message version {}", job.v)));
        }
        if job.stream.is_empty() || job.stream.len() > 128 || job.segment < 0 {
            return Err(BusError::Message(format!(
                "job for stream '{}' segment {}",
                job.stream.escape_debug(),
                job.segment
            )));
        }
        Ok(job)
    }
}

/// A job a worker holds until it says [`SegmentQueue::done`] or [`SegmentQueue::again`].
#[derive(Debug)]
pub struct ClaimedJob {
    pub job: SegmentJob,
    receipt: Receipt,
}

#[derive(Debug)]
enum Receipt {
    /// The entry's id in the Stream.
    Redis(String),
    /// The message's lease, held (and extended by the client) until acked or nacked.
    PubSub(Handler),
}

/// What waits in the queue, as the engine counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Jobs not yet delivered to any worker.
    pub waiting: u64,
    /// Jobs delivered and not yet acknowledged (being analysed, or left by a dead worker).
    pub in_flight: u64,
    /// How long the oldest job, delivered or not, has been in the queue.
    pub oldest_age: Duration,
}

/// The batch work queue on Redis or Pub/Sub (see the module's documentation). Each worker
/// connects its own, under its own consumer name.
#[derive(Clone)]
pub struct SegmentQueue {
    engine: Engine,
    /// The engine's queue did not exist before this connection made it.
    fresh: bool,
}

impl std::fmt::Debug for SegmentQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentQueue")
            .field("engine", &self.engine_name())
            .finish()
    }
}

#[derive(Clone)]
enum Engine {
    Redis(Arc<RedisJobs>),
    PubSub(Arc<PubSubJobs>),
}

impl SegmentQueue {
    /// Connects to the work queue of the bus `config` names, as worker `consumer`; `None` for the
    /// in-process bus, which has none. `lease`: how long a claimed job stays a worker's without
    /// being renewed (Redis); a worker renews it well within that.
    pub async fn connect(
        config: &BusConfig,
        consumer: &str,
        lease: Duration,
    ) -> Result<Option<Self>> {
        let (engine, fresh) = match config {
            BusConfig::InProcess => return Ok(None),
            BusConfig::Redis { url, .. } => {
                let (jobs, fresh) = RedisJobs::connect(url, consumer, lease).await?;
                (Engine::Redis(Arc::new(jobs)), fresh)
            }
            BusConfig::PubSub {
                project,
                prefix,
                emulator,
            } => {
                let (jobs, fresh) =
                    PubSubJobs::connect(project, prefix, emulator.as_deref()).await?;
                (Engine::PubSub(Arc::new(jobs)), fresh)
            }
        };
        Ok(Some(Self { engine, fresh }))
    }

    /// Whether the engine's queue was made by this connection: it did not exist before (a new
    /// install, or an engine that lost its data), so no job recorded as pushed is in it.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    pub fn engine_name(&self) -> &'static str {
        match self.engine {
            Engine::Redis(_) => "redis",
            Engine::PubSub(_) => "pubsub",
        }
    }

    /// Adds a job.
    pub async fn push(&self, job: &SegmentJob) -> Result<()> {
        match &self.engine {
            Engine::Redis(r) => r.push(job).await,
            Engine::PubSub(p) => p.push(job).await,
        }
    }

    /// The next job for this worker, waiting at most `wait` for one: first a job whose worker
    /// stopped renewing its claim, then a new one. `Ok(None)`: nothing came in time (or what came
    /// was not a job, and was dropped and logged).
    pub async fn next(&self, wait: Duration) -> Result<Option<ClaimedJob>> {
        match &self.engine {
            Engine::Redis(r) => r.next(wait).await,
            Engine::PubSub(p) => p.next(wait).await,
        }
    }

    /// Keeps a job this worker runs; `false` when it is no longer its own (its claim ran out and
    /// another worker took the job over): the worker then stops it.
    pub async fn renew(&self, claimed: &ClaimedJob) -> Result<bool> {
        match (&self.engine, &claimed.receipt) {
            (Engine::Redis(r), Receipt::Redis(id)) => r.renew(id).await,
            // The Pub/Sub client extends the lease by itself while the handler is held.
            _ => Ok(true),
        }
    }

    /// The job's outcome is stored: it leaves the queue.
    pub async fn done(&self, claimed: ClaimedJob) -> Result<()> {
        match (&self.engine, claimed.receipt) {
            (Engine::Redis(r), Receipt::Redis(id)) => r.done(&id).await,
            (_, Receipt::PubSub(handler)) => {
                handler.ack();
                Ok(())
            }
            (Engine::PubSub(_), Receipt::Redis(_)) => Ok(()),
        }
    }

    /// Hands a job back to be delivered again: Pub/Sub redelivers it at once; on Redis it stays
    /// pending and is taken over when its claim runs out.
    pub async fn again(&self, claimed: ClaimedJob) -> Result<()> {
        if let Receipt::PubSub(handler) = claimed.receipt {
            handler.nack();
        }
        Ok(())
    }

    /// What waits in the queue; `None` where the engine can't say cheaply (Pub/Sub: its backlog
    /// is a Cloud Monitoring metric).
    pub async fn depth(&self) -> Result<Option<QueueDepth>> {
        match &self.engine {
            Engine::Redis(r) => r.depth().await.map(Some),
            Engine::PubSub(_) => Ok(None),
        }
    }
}

fn redis_error(e: redis::RedisError) -> BusError {
    BusError::Redis(e.to_string())
}

/// The ms timestamp of a Stream entry id (`1700000000000-0`).
fn id_ms(id: &str) -> Option<i64> {
    id.split_once('-').map_or(id, |(ms, _)| ms).parse().ok()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

struct RedisJobs {
    /// For short commands (push, acknowledge, renew, depth).
    commands: ConnectionManager,
    /// For the blocking read alone: a blocked `XREADGROUP` would hold up every command queued
    /// behind it on a shared connection.
    reads: Mutex<Option<ConnectionManager>>,
    client: redis::Client,
    consumer: String,
    lease: Duration,
}

impl RedisJobs {
    async fn connect(url: &str, consumer: &str, lease: Duration) -> Result<(Self, bool)> {
        let client = redis::Client::open(url).map_err(redis_error)?;
        let commands = client
            .get_connection_manager_with_config(connection_config(Duration::from_secs(2)))
            .await
            .map_err(|e| BusError::Redis(format!("cannot connect to {url}: {e}")))?;
        let jobs = Self {
            commands,
            reads: Mutex::new(None),
            client,
            consumer: consumer.to_string(),
            lease,
        };
        let fresh = jobs.ensure_group().await?;
        Ok((jobs, fresh))
    }

    /// Creates the Stream and the group (from the Stream's start, so jobs pushed before any
    /// worker existed are delivered); an existing group is left as it is. Whether it was made.
    async fn ensure_group(&self) -> Result<bool> {
        let mut c = self.commands.clone();
        let created: redis::RedisResult<()> = c
            .xgroup_create_mkstream(REDIS_JOBS_KEY, REDIS_GROUP, "0")
            .await;
        match created {
            Ok(()) => Ok(true),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(false),
            Err(e) => Err(redis_error(e)),
        }
    }

    async fn push(&self, job: &SegmentJob) -> Result<()> {
        let mut c = self.commands.clone();
        let _: String = c
            .xadd(REDIS_JOBS_KEY, "*", &[("job", job.to_json())])
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    async fn next(&self, wait: Duration) -> Result<Option<ClaimedJob>> {
        // A dead worker's job first: it is the oldest.
        let mut c = self.commands.clone();
        let lease_ms = self.lease.as_millis() as u64;
        let taken: redis::RedisResult<StreamAutoClaimReply> = c
            .xautoclaim_options(
                REDIS_JOBS_KEY,
                REDIS_GROUP,
                &self.consumer,
                lease_ms,
                "0-0",
                StreamAutoClaimOptions::default().count(1),
            )
            .await;
        let taken = match taken {
            Ok(taken) => taken,
            // The group is gone (the Stream was deleted, or Redis restarted empty): made again
            // from the Stream's start, so jobs pushed meanwhile are delivered.
            Err(e) if e.code() == Some("NOGROUP") => {
                warn!(
                    "the batch work queue is gone from Redis (it restarted without its data?); made again — jobs it held run when an ingest host restarts"
                );
                self.ensure_group().await?;
                return Ok(None);
            }
            Err(e) => return Err(redis_error(e)),
        };
        if let Some(entry) = taken.claimed.into_iter().next() {
            info!(entry = %entry.id, "took over a batch job whose worker stopped renewing it");
            return self.claimed(entry).await;
        }
        let block_ms = wait.as_millis().clamp(1, 30_000) as usize;
        let mut reads = self.reads.lock().await;
        let connection = match reads.as_mut() {
            Some(c) => c,
            None => {
                let timeout = Duration::from_millis(block_ms as u64) + Duration::from_secs(2);
                let c = self
                    .client
                    .get_connection_manager_with_config(connection_config(timeout))
                    .await
                    .map_err(redis_error)?;
                reads.insert(c)
            }
        };
        let options = StreamReadOptions::default()
            .group(REDIS_GROUP, &self.consumer)
            .count(1)
            .block(block_ms);
        let read: redis::RedisResult<Option<StreamReadReply>> = connection
            .xread_options(&[REDIS_JOBS_KEY], &[">"], &options)
            .await;
        let read = match read {
            Ok(read) => read,
            Err(e) if e.code() == Some("NOGROUP") => {
                drop(reads);
                self.ensure_group().await?;
                return Ok(None);
            }
            Err(e) => return Err(redis_error(e)),
        };
        drop(reads);
        match read
            .and_then(|r| r.keys.into_iter().next())
            .and_then(|k| k.ids.into_iter().next())
        {
            Some(entry) => self.claimed(entry).await,
            None => Ok(None),
        }
    }

    /// A Stream entry as a claimed job; one that is not a job is dropped (acknowledged and
    /// deleted) and `None` returned.
    async fn claimed(&self, entry: StreamId) -> Result<Option<ClaimedJob>> {
        let parsed = match entry.map.get("job") {
            Some(redis::Value::BulkString(data)) => SegmentJob::from_json(data),
            _ => Err(BusError::Message("an entry without a job".into())),
        };
        match parsed {
            Ok(job) => Ok(Some(ClaimedJob {
                job,
                receipt: Receipt::Redis(entry.id),
            })),
            Err(e) => {
                warn!(entry = %entry.id, "dropping a queue entry that is not a job: {e}");
                self.done(&entry.id).await?;
                Ok(None)
            }
        }
    }

    async fn renew(&self, id: &str) -> Result<bool> {
        let mut c = self.commands.clone();
        let pending: StreamPendingCountReply = c
            .xpending_count(REDIS_JOBS_KEY, REDIS_GROUP, id, id, 1)
            .await
            .map_err(redis_error)?;
        let ours = pending
            .ids
            .first()
            .is_some_and(|p| p.id == id && p.consumer == self.consumer);
        if !ours {
            return Ok(false);
        }
        // Resets the entry's idle time (its claim), as this consumer's.
        let _: redis::Value = c
            .xclaim_options(
                REDIS_JOBS_KEY,
                REDIS_GROUP,
                &self.consumer,
                0,
                &[id],
                StreamClaimOptions::default().with_justid(),
            )
            .await
            .map_err(redis_error)?;
        Ok(true)
    }

    async fn done(&self, id: &str) -> Result<()> {
        let mut c = self.commands.clone();
        let _: (i64, i64) = redis::pipe()
            .atomic()
            .xack(REDIS_JOBS_KEY, REDIS_GROUP, &[id])
            .xdel(REDIS_JOBS_KEY, &[id])
            .query_async(&mut c)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth> {
        let mut c = self.commands.clone();
        let groups: redis::streams::StreamInfoGroupsReply =
            c.xinfo_groups(REDIS_JOBS_KEY).await.map_err(redis_error)?;
        let Some(group) = groups.groups.into_iter().find(|g| g.name == REDIS_GROUP) else {
            return Ok(QueueDepth::default());
        };
        // Acknowledged entries are deleted, so what is left is pending or not yet delivered.
        let first: redis::streams::StreamRangeReply = c
            .xrange_count(REDIS_JOBS_KEY, "-", "+", 1)
            .await
            .map_err(redis_error)?;
        let length: u64 = c.xlen(REDIS_JOBS_KEY).await.map_err(redis_error)?;
        let in_flight = group.pending as u64;
        let oldest_age = first
            .ids
            .first()
            .and_then(|e| id_ms(&e.id))
            .map_or(Duration::ZERO, |ms| {
                Duration::from_millis(now_ms().saturating_sub(ms).max(0) as u64)
            });
        Ok(QueueDepth {
            waiting: group
                .lag
                .map_or(length.saturating_sub(in_flight), |l| l as u64),
            in_flight,
            oldest_age,
        })
    }

    /// Removes consumers that hold nothing and have been idle for an hour (earlier pods).
    async fn forget_idle_consumers(&self) -> Result<u64> {
        let mut c = self.commands.clone();
        let consumers: redis::streams::StreamInfoConsumersReply = c
            .xinfo_consumers(REDIS_JOBS_KEY, REDIS_GROUP)
            .await
            .map_err(redis_error)?;
        let mut removed = 0;
        for consumer in consumers.consumers {
            if consumer.pending == 0
                && consumer.idle as u128 >= IDLE_CONSUMER.as_millis()
                && consumer.name != self.consumer
            {
                let _: i64 = c
                    .xgroup_delconsumer(REDIS_JOBS_KEY, REDIS_GROUP, &consumer.name)
                    .await
                    .map_err(redis_error)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn connection_config(response_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(100))
        .set_max_delay(Duration::from_secs(2))
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(response_timeout))
}

/// Pub/Sub's side: a publisher for the jobs topic and, once a worker asks for a job, one
/// streaming pull with at most one message outstanding.
struct PubSubJobs {
    publisher: Publisher,
    subscriber: Subscriber,
    subscription: String,
    /// Filled by the pull task once the first `next` starts it.
    messages: Mutex<Option<mpsc::Receiver<(Message, Handler)>>>,
}

fn pubsub_error(what: &str, e: impl std::fmt::Display) -> BusError {
    BusError::PubSub(format!("{what}: {e}"))
}

impl PubSubJobs {
    async fn connect(project: &str, prefix: &str, emulator: Option<&str>) -> Result<(Self, bool)> {
        let topic = format!("projects/{project}/topics/{prefix}-segments");
        let subscription = format!("projects/{project}/subscriptions/{prefix}-segments-analyze");
        let topics = crate::pubsub::configure!(TopicAdmin::builder(), emulator)
            .build()
            .await
            .map_err(|e| pubsub_error("topic client", e))?;
        match topics.create_topic().set_name(&topic).send().await {
            Ok(_) => info!(%topic, "created Pub/Sub topic"),
            Err(e) if crate::pubsub::already_exists(&e) => {}
            Err(e) => return Err(pubsub_error(&format!("creating {topic}"), e)),
        }
        let admin = crate::pubsub::configure!(SubscriptionAdmin::builder(), emulator)
            .build()
            .await
            .map_err(|e| pubsub_error("subscription client", e))?;
        // Shared by every worker, and kept: jobs wait in it while no worker runs.
        let created = admin
            .create_subscription()
            .set_name(&subscription)
            .set_topic(&topic)
            .set_ack_deadline_seconds(60)
            .send()
            .await;
        let fresh = match created {
            Ok(_) => {
                info!(%subscription, "created Pub/Sub subscription");
                true
            }
            Err(e) if crate::pubsub::already_exists(&e) => false,
            Err(e) => return Err(pubsub_error(&format!("creating {subscription}"), e)),
        };
        let publisher = crate::pubsub::configure!(Publisher::builder(topic.clone()), emulator)
            .set_delay_threshold(Duration::from_millis(5))
            .build()
            .await
            .map_err(|e| pubsub_error(&format!("publisher for {topic}"), e))?;
        let subscriber = crate::pubsub::configure!(Subscriber::builder(), emulator)
            .build()
            .await
            .map_err(|e| pubsub_error("subscriber client", e))?;
        Ok((
            Self {
                publisher,
                subscriber,
                subscription,
                messages: Mutex::new(None),
            },
            fresh,
        ))
    }

    async fn push(&self, job: &SegmentJob) -> Result<()> {
        let message = Message::new()
            .set_data(bytes::Bytes::from(job.to_json()))
            .set_attributes([("v", "1".to_string()), ("stream", job.stream.clone())]);
        match tokio::time::timeout(Duration::from_secs(10), self.publisher.publish(message)).await {
            Ok(Ok(_id)) => Ok(()),
            Ok(Err(e)) => Err(pubsub_error("publishing a job", e)),
            Err(_) => Err(BusError::PubSub("publishing a job timed out".into())),
        }
    }

    async fn next(&self, wait: Duration) -> Result<Option<ClaimedJob>> {
        let mut messages = self.messages.lock().await;
        let rx = messages.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(pull(self.subscriber.clone(), self.subscription.clone(), tx));
            rx
        });
        let received = match tokio::time::timeout(wait, rx.recv()).await {
            Err(_) => return Ok(None),
            Ok(None) => return Err(BusError::Closed),
            Ok(Some(received)) => received,
        };
        let (message, handler) = received;
        match SegmentJob::from_json(&message.data) {
            Ok(job) => Ok(Some(ClaimedJob {
                job,
                receipt: Receipt::PubSub(handler),
            })),
            Err(e) => {
                warn!(subscription = %self.subscription, "dropping a message that is not a job: {e}");
                handler.ack();
                Ok(None)
            }
        }
    }
}

/// Pulls the jobs subscription, one message outstanding at a time, until the worker's queue is
/// dropped; re-opens the stream after errors.
async fn pull(subscriber: Subscriber, subscription: String, tx: mpsc::Sender<(Message, Handler)>) {
    let mut attempt = 0u32;
    loop {
        let mut stream = subscriber
            .subscribe(subscription.clone())
            .set_max_outstanding_messages(1)
            // A segment takes seconds to analyse, not an hour: a job held that long is stuck.
            .set_max_lease(Duration::from_secs(600))
            .build();
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                _ = tx.closed() => return,
            };
            match next {
                Some(Ok(received)) => {
                    attempt = 0;
                    if tx.send(received).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    if attempt == 0 {
                        warn!(%subscription, "Pub/Sub job stream failed, re-opening: {e}");
                    }
                    break;
                }
                None => break,
            }
        }
        tokio::time::sleep(crate::reconnect_delay(attempt)).await;
        attempt += 1;
    }
}

/// Starts a worker's queue: on Redis, removes consumers that earlier pods left idle.
pub async fn prepare_worker(queue: &SegmentQueue) {
    if let Engine::Redis(r) = &queue.engine {
        match r.forget_idle_consumers().await {
            Ok(0) => {}
            Ok(n) => info!(consumers = n, "removed idle consumers of the batch queue"),
            Err(e) => warn!("cannot list the batch queue's consumers: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_message_is_bounded_and_checked_before_it_is_used() {
        let job = SegmentJob::new("str_a", 7, 1_700_000_000_000);
        assert_eq!(
            SegmentJob::from_json(job.to_json().as_bytes()).unwrap(),
            job
        );
        for bad in [
            r#"{"v":2,"stream":"s","segment":1,"queued_at":0}"#,
            r#"{"v":1,"stream":"","segment":1,"queued_at":0}"#,
            r#"{"v":1,"stream":"s","segment":-1,"queued_at":0}"#,
            r#"{"v":1,"stream":"s"}"#,
            "[[[[[[",
        ] {
            assert!(SegmentJob::from_json(bad.as_bytes()).is_err(), "{bad}");
        }
        let long = format!(
            r#"{{"v":1,"stream":"{}","segment":1,"queued_at":0}}"#,
            "s".repeat(MAX_JOB_BYTES)
        );
        let e = SegmentJob::from_json(long.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("at most 4096"), "{e}");
    }

    #[test]
    fn an_entry_id_gives_the_time_it_was_added() {
        assert_eq!(id_ms("1700000000123-4"), Some(1_700_000_000_123));
        assert_eq!(id_ms("nonsense"), None);
    }
}
