//! The event bus: analysis hosts publish what they find, API hosts fan it out to WebSocket viewers.
//!
//! One interface, three backends chosen by URL (`--bus`):
//! - `memory` (default): in-process, for one `serve` doing everything;
//! - `redis://HOST:PORT[/DB]`: `PUBLISH` on one channel per tenant and stream for live fan-out, plus a
//!   capped Stream (`XADD MAXLEN ~`) per tenant and stream for replay, written in one pipeline;
//! - `pubsub://PROJECT`: Google Cloud Pub/Sub, one topic per kind of event, the stream id as
//!   ordering key, one subscription per API host; `PUBSUB_EMULATOR_HOST` selects the emulator,
//!   otherwise real GCP with Application Default Credentials.
//!
//! Messages are versioned JSON (`Envelope`, `v: 1`) carrying tenant, stream, seq and pts.
//! Publishing never blocks analysis: `Publisher` queues a bounded number of messages and a task
//! sends them; while the bus is unreachable it retries with backoff, and what it could not send is
//! counted as the gap (the store still has every detection; viewers resume from it).

pub mod bench;
mod message;
mod pubsub;
mod redis_bus;
pub mod segments;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use tokio::sync::{broadcast, mpsc};
use tracing::{info, warn};

pub use message::{
    Alert, Control, Detection, Effect, Envelope, Event, FrameDetections, FrameTiming,
    PipelineApplied, Scene, SceneColour, StreamChange, VERSION, rfc3339_ms,
};
pub use segments::{ClaimedJob, QueueDepth, SegmentJob, SegmentQueue};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus URL '{0}': expected memory, redis://HOST:PORT or pubsub://PROJECT")]
    BadUrl(String),
    #[error("redis: {0}")]
    Redis(String),
    #[error("pub/sub: {0}")]
    PubSub(String),
    #[error("message: {0}")]
    Message(String),
    #[error("the bus is closed")]
    Closed,
}

pub type Result<T> = std::result::Result<T, BusError>;

/// Which bus, parsed from `--bus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusConfig {
    InProcess,
    Redis {
        url: String,
        /// Entries kept per tenant/stream in the replay Stream (approximate, `MAXLEN ~`).
        replay_len: usize,
    },
    PubSub {
        project: String,
        /// Prefix of topic names (`{prefix}-detections`, …); lets tests and installs share a project.
        prefix: String,
        /// `HOST:PORT` of the Pub/Sub emulator (from `PUBSUB_EMULATOR_HOST` when parsed); `None`:
        /// real GCP with Application Default Credentials.
        emulator: Option<String>,
    },
}

impl std::str::FromStr for BusConfig {
    type Err = BusError;
    fn from_str(s: &str) -> Result<Self> {
        if s == "memory" || s.is_empty() {
            return Ok(Self::InProcess);
        }
        if s.starts_with("redis://") || s.starts_with("rediss://") {
            return Ok(Self::Redis {
                url: s.to_string(),
                replay_len: 10_000,
            });
        }
        if let Some(rest) = s.strip_prefix("pubsub://") {
            let (project, prefix) = rest.split_once('/').unwrap_or((rest, "media-analyzer"));
            if project.len() < 3 || prefix.is_empty() {
                return Err(BusError::BadUrl(s.to_string()));
            }
            return Ok(Self::PubSub {
                project: project.to_string(),
                prefix: prefix.to_string(),
                emulator: std::env::var("PUBSUB_EMULATOR_HOST")
                    .ok()
                    .filter(|h| !h.is_empty()),
            });
        }
        Err(BusError::BadUrl(s.to_string()))
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct BusStats {
    pub published: AtomicU64,
    /// Messages that never reached the bus (outage, or the publish queue was full): the gap.
    pub gap: AtomicU64,
    pub received: AtomicU64,
    /// Times a subscription was re-established after the bus went away.
    pub resubscribed: AtomicU64,
}

/// The bus's counters for `/metrics`, labelled with its backend.
#[derive(Debug)]
struct BusMetrics {
    stats: Arc<BusStats>,
    backend: &'static str,
}

impl Collector for BusMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let s = &self.stats;
        for (name, help, value) in [
            ("published", "messages published", c(&s.published)),
            (
                "gap",
                "messages not published because the bus was unreachable or behind",
                c(&s.gap),
            ),
            ("received", "messages received", c(&s.received)),
            (
                "resubscribed",
                "subscriptions re-established after an outage",
                c(&s.resubscribed),
            ),
        ] {
            let name = format!("media_analyzer_bus_{name}");
            let mut family = encoder.encode_descriptor(&name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(family.encode_family(&[("backend", self.backend)])?)?;
        }
        Ok(())
    }
}

/// What a subscription yields.
#[derive(Debug, Clone)]
pub enum Delivery {
    Message(Arc<Envelope>),
    /// The subscription was lost and is back: messages may have been missed in between (viewers
    /// should be re-synchronised from the store).
    Resubscribed,
}

/// The subscriber dropped its receiver.
pub(crate) struct SubscriberGone;

/// Decodes one message received from a bus and hands it to the subscriber; a malformed one is
/// logged (with where it came `from`) and skipped.
pub(crate) async fn deliver(
    data: &[u8],
    from: &str,
    stats: &BusStats,
    tx: &mpsc::Sender<Delivery>,
) -> std::result::Result<(), SubscriberGone> {
    match Envelope::from_json(data) {
        Ok(envelope) => {
            stats.received.fetch_add(1, Ordering::Relaxed);
            tx.send(Delivery::Message(Arc::new(envelope)))
                .await
                .map_err(|_| SubscriberGone)
        }
        Err(e) => {
            warn!(from, "ignoring a message: {e}");
            Ok(())
        }
    }
}

#[derive(Clone)]
enum Backend {
    InProcess(broadcast::Sender<Delivery>),
    Redis(redis_bus::RedisBus),
    PubSub(pubsub::PubSubBus),
}

/// A connected bus; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    backend: Backend,
    stats: Arc<BusStats>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("backend", &self.backend_name())
            .finish()
    }
}

impl Bus {
    /// Connects (Redis: the first connection must succeed; Pub/Sub: topics are created if missing).
    pub async fn connect(config: &BusConfig) -> Result<Self> {
        let backend = match config {
            BusConfig::InProcess => Backend::InProcess(broadcast::channel(4096).0),
            BusConfig::Redis { url, replay_len } => {
                Backend::Redis(redis_bus::RedisBus::connect(url, *replay_len).await?)
            }
            BusConfig::PubSub {
                project,
                prefix,
                emulator,
            } => Backend::PubSub(
                pubsub::PubSubBus::connect(project, prefix, emulator.as_deref()).await?,
            ),
        };
        let bus = Self {
            backend,
            stats: Arc::new(BusStats::default()),
        };
        info!(backend = bus.backend_name(), "event bus connected");
        Ok(bus)
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::InProcess(_) => "memory",
            Backend::Redis(_) => "redis",
            Backend::PubSub(_) => "pubsub",
        }
    }

    pub fn stats(&self) -> &Arc<BusStats> {
        &self.stats
    }

    /// The bus's counters for `/metrics` (`backend` label: [`Self::backend_name`]).
    pub fn collector(&self) -> Box<dyn Collector> {
        Box::new(BusMetrics {
            stats: self.stats.clone(),
            backend: self.backend_name(),
        })
    }

    /// Publishes one message and waits for the bus to take it.
    pub async fn publish(&self, envelope: &Envelope) -> Result<()> {
        let result = match &self.backend {
            Backend::InProcess(tx) => {
                // No receivers is not an error: nobody is watching.
                let _ = tx.send(Delivery::Message(Arc::new(envelope.clone())));
                Ok(())
            }
            Backend::Redis(r) => r.publish(envelope).await,
            Backend::PubSub(p) => p.publish(envelope).await,
        };
        if result.is_ok() {
            self.stats.published.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Every message for every tenant and stream, as they arrive. The subscription survives bus
    /// outages: it reconnects with backoff and then yields `Delivery::Resubscribed`. Its task
    /// ends, and a Redis or Pub/Sub subscription is closed, when the receiver is dropped.
    pub async fn subscribe(&self) -> Result<mpsc::Receiver<Delivery>> {
        let (tx, rx) = mpsc::channel(4096);
        match &self.backend {
            Backend::InProcess(sender) => {
                let mut messages = sender.subscribe();
                let stats = self.stats.clone();
                tokio::spawn(async move {
                    loop {
                        // Ends with the subscription's receiver, also when nothing is published.
                        let next = tokio::select! {
                            next = messages.recv() => next,
                            _ = tx.closed() => return,
                        };
                        match next {
                            Ok(d) => {
                                stats.received.fetch_add(1, Ordering::Relaxed);
                                if tx.send(d).await.is_err() {
                                    return;
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(n)) => {
                                warn!("in-process bus subscriber fell {n} messages behind");
                                stats.gap.fetch_add(n, Ordering::Relaxed);
                                if tx.send(Delivery::Resubscribed).await.is_err() {
                                    return;
                                }
                            }
                            Err(broadcast::error::RecvError::Closed) => return,
                        }
                    }
                });
            }
            Backend::Redis(r) => r.subscribe(tx, self.stats.clone()).await?,
            Backend::PubSub(p) => p.subscribe(tx, self.stats.clone()).await?,
        }
        Ok(rx)
    }

    /// Messages kept for replay of one stream with `seq` greater than `after` (Redis only; the
    /// other backends keep no history and return `None`: use the store).
    pub async fn replay(
        &self,
        tenant: &str,
        stream: &str,
        after: u64,
    ) -> Result<Option<Vec<Envelope>>> {
        match &self.backend {
            Backend::Redis(r) => r.replay(tenant, stream, after).await.map(Some),
            _ => Ok(None),
        }
    }

    /// A non-blocking publisher for analysis threads (see `Publisher`).
    pub fn publisher(&self, queue: usize) -> Publisher {
        let (tx, rx) = mpsc::channel(queue.max(1));
        tokio::spawn(self.clone().publish_queued(rx));
        Publisher {
            tx,
            stats: self.stats.clone(),
            observer: None,
        }
    }

    async fn publish_queued(self, mut rx: mpsc::Receiver<Envelope>) {
        let mut backoff = Duration::from_millis(100);
        let mut down_since: Option<std::time::Instant> = None;
        while let Some(envelope) = rx.recv().await {
            match self.publish(&envelope).await {
                Ok(()) => {
                    if let Some(since) = down_since.take() {
                        info!(backend = self.backend_name(), down_for = ?since.elapsed(), gap = self.stats.gap.load(Ordering::Relaxed), "event bus reachable again; publishing resumed");
                    }
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    self.stats.gap.fetch_add(1, Ordering::Relaxed);
                    if down_since.is_none() {
                        warn!(
                            backend = self.backend_name(),
                            "event bus unreachable, results are still stored; retrying with backoff: {e}"
                        );
                        down_since = Some(std::time::Instant::now());
                    }
                    // Wait before the next try; what queues up meanwhile is dropped (and counted)
                    // by `Publisher::send` once the queue is full.
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Sees each message a [`Publisher`] sends, on the host that sends it (e.g. webhook deliveries,
/// made once per event by the host that produced it). Called on the sender's thread: it must not
/// block.
pub type Observer = Arc<dyn Fn(&Envelope) + Send + Sync>;

/// Hands messages to the bus without waiting: analysis never blocks on the bus.
#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Envelope>,
    stats: Arc<BusStats>,
    observer: Option<Observer>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("observed", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Queues a message; when the queue is full (the bus is down or slow) the message is dropped
    /// and counted in the gap. The observer, if any, sees it first, whatever the bus does.
    pub fn send(&self, envelope: Envelope) {
        if let Some(observer) = &self.observer {
            observer(&envelope);
        }
        if self.tx.try_send(envelope).is_err() {
            self.stats.gap.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The same publisher, showing each message it sends to `observer` as well.
    pub fn observed_by(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }
}

/// Backoff between reconnection attempts: 100 ms doubling to 5 s, with jitter.
pub(crate) fn reconnect_delay(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(6)).min(5_000);
    let jitter = rand::random::<u64>() % (base / 4 + 1);
    Duration::from_millis(base + jitter)
}

#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
