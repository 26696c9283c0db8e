//! Webhooks: a tenant's `alert` and `stream` events POSTed to the endpoints it registered
//! (`POST /api/v1/webhooks`), by the host that produced them.
//!
//! - **Never blocking the sender**: [`Webhooks::observe`] (the bus publisher's observer) only
//!   queues the event (bounded; a full queue drops it and counts it). One dispatcher reads the
//!   tenant's webhooks from the store and hands the event to each subscribed webhook's own queue
//!   (bounded, [`WebhookConfig::queue`]; full: dropped and counted on the webhook), so a slow or
//!   hanging endpoint only ever delays its own deliveries.
//! - **Signed**: the body is the event's JSON as viewers get it on the WebSocket
//!   (`{"type":"alert",…}`); `X-MediaAnalyzer-Signature: sha256=<hex HMAC-SHA256 of the body
//!   under the webhook's secret>`; `X-MediaAnalyzer-Delivery` is the same on every attempt (the
//!   alert's id for alerts), for the receiver to drop duplicates.
//! - **Retried**: each webhook delivers in order, one event at a time, each attempt within
//!   [`WebhookConfig::timeout`]; a failure (no answer, not 2xx) is tried again after a backoff
//!   that doubles, up to [`WebhookConfig::attempts`] in all; then the event is given up on and
//!   counted as failed. The counters and the last attempt's outcome are on the webhook
//!   (`GET /api/v1/webhooks`) and in `/metrics`.
//! - **Reaching only what it may**: see [`address`]. Redirects are not followed.

pub mod address;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use sha2::Sha256;
use store::{DeliveryOutcome, Store};
use tokio::sync::mpsc;
use tracing::{info, warn};

pub use address::AddressPolicy;

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "X-MediaAnalyzer-Signature";
/// The header carrying the delivery's id (the same on every attempt).
pub const DELIVERY_HEADER: &str = "X-MediaAnalyzer-Delivery";
/// The header carrying the event kind (`alert`, `stream`).
pub const EVENT_HEADER: &str = "X-MediaAnalyzer-Event";
/// The header carrying the attempt number (1, 2, …).
pub const ATTEMPT_HEADER: &str = "X-MediaAnalyzer-Attempt";

/// The event kinds a webhook may subscribe to.
pub const EVENTS: [&str; 2] = ["alert", "stream"];

/// How deliveries are made.
#[derive(Debug, Clone, Copy)]
pub struct WebhookConfig {
    pub policy: AddressPolicy,
    /// Attempts per event, the first included.
    pub attempts: u32,
    /// One attempt, connecting included.
    pub timeout: Duration,
    /// The wait after the first failed attempt; doubled after each one (with up to a quarter
    /// more at random), at most [`MAX_BACKOFF`].
    pub first_backoff: Duration,
    /// Events waiting per webhook.
    pub queue: usize,
    /// Events waiting for the dispatcher.
    pub dispatch_queue: usize,
}

/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            policy: AddressPolicy::default(),
            attempts: 5,
            timeout: Duration::from_secs(5),
            first_backoff: Duration::from_secs(1),
            queue: 256,
            dispatch_queue: 1024,
        }
    }
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `secret`, as [`SIGNATURE_HEADER`] carries it.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Events accepted by an endpoint.
    pub delivered: AtomicU64,
    /// Attempts that failed (each one; an event may fail several times before it is delivered).
    pub attempts_failed: AtomicU64,
    /// Events given up on after every attempt failed.
    pub failed: AtomicU64,
    /// Events not delivered because a queue was full.
    pub dropped: AtomicU64,
    /// Events whose webhook was deleted before they were delivered.
    pub cancelled: AtomicU64,
}

/// One event to deliver, signed per webhook at each attempt.
#[derive(Debug)]
struct Delivery {
    id: String,
    kind: &'static str,
    body: Vec<u8>,
}

/// Delivers a tenant's events to its webhooks; see the module docs. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    events: mpsc::Sender<bus::Envelope>,
    stats: Arc<WebhookStats>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").finish_non_exhaustive()
    }
}

/// What the dispatcher and the webhooks' workers share.
struct Shared {
    store: Store,
    client: reqwest::Client,
    config: WebhookConfig,
    stats: Arc<WebhookStats>,
    /// Per webhook with a worker running, its queue.
    workers: Mutex<HashMap<String, mpsc::Sender<Arc<Delivery>>>>,
}

impl Webhooks {
    /// Starts the dispatcher on the current Tokio runtime.
    pub fn start(store: Store, config: WebhookConfig) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .dns_resolver(address::CheckedResolver(config.policy))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(config.timeout)
            .user_agent(concat!(
                "media-analyzer-webhooks/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| format!("the webhook HTTP client: {e}"))?;
        let (events, queued) = mpsc::channel(config.dispatch_queue.max(1));
        let stats = Arc::new(WebhookStats::default());
        let shared = Arc::new(Shared {
            store,
            client,
            config,
            stats: stats.clone(),
            workers: Mutex::default(),
        });
        tokio::spawn(dispatch(shared, queued));
        Ok(Self { events, stats })
    }

    /// Queues the event for the tenant's webhooks if it is of a kind they take (`alert`,
    /// `stream`); never waits.
    pub fn observe(&self, envelope: &bus::Envelope) {
        if !matches!(envelope.event, bus::Event::Alert(_) | bus::Event::Stream(_)) {
            return;
        }
        if self.events.try_send(envelope.clone()).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// [`Self::observe`] as the bus publisher's observer.
    pub fn observer(&self) -> bus::Observer {
        let webhooks = self.clone();
        Arc::new(move |envelope| webhooks.observe(envelope))
    }

    pub fn stats(&self) -> Arc<WebhookStats> {
        self.stats.clone()
    }

    /// The counters, for `/metrics`.
    pub fn collector(&self) -> Box<dyn Collector> {
        Box::new(WebhookMetrics(self.stats.clone()))
    }
}

/// Hands each event to the workers of the tenant's webhooks that take its kind.
async fn dispatch(shared: Arc<Shared>, mut queued: mpsc::Receiver<bus::Envelope>) {
    while let Some(envelope) = queued.recv().await {
        let kind = envelope.event.kind();
        let hooks = match shared.store.webhooks(&envelope.tenant).await {
            Ok(hooks) => hooks,
            Err(e) => {
                shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
                warn!(tenant = %envelope.tenant, kind, "cannot read the tenant's webhooks, the event is not delivered: {e}");
                continue;
            }
        };
        let mut hooks = hooks
            .into_iter()
            .filter(|h| h.events.iter().any(|e| e == kind))
            .peekable();
        if hooks.peek().is_none() {
            continue;
        }
        let id = match &envelope.event {
            bus::Event::Alert(alert) if !alert.id.is_empty() => alert.id.clone(),
            _ => store::new_id("evt"),
        };
        let body = match serde_json::to_vec(&envelope.event) {
            Ok(body) => body,
            Err(e) => {
                warn!("cannot encode a {kind} event for webhooks: {e}");
                continue;
            }
        };
        let delivery = Arc::new(Delivery { id, kind, body });
        for hook in hooks {
            shared
                .enqueue(&hook.tenant_id, &hook.id, delivery.clone())
                .await;
        }
    }
}

impl Shared {
    /// Into the webhook's queue, starting its worker if none runs; counted as dropped when full.
    async fn enqueue(self: &Arc<Self>, tenant: &str, hook: &str, delivery: Arc<Delivery>) {
        let full = {
            let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
            let queue = workers.entry(hook.to_string()).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(self.config.queue.max(1));
                tokio::spawn(self.clone().work(tenant.to_string(), hook.to_string(), rx));
                tx
            });
            queue.try_send(delivery).is_err()
        };
        if full {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            self.record(hook, &DeliveryOutcome::Dropped).await;
        }
    }

    /// Delivers the webhook's events in order until its queue has been idle for a minute.
    async fn work(
        self: Arc<Self>,
        tenant: String,
        hook: String,
        mut queue: mpsc::Receiver<Arc<Delivery>>,
    ) {
        const IDLE: Duration = Duration::from_secs(60);
        loop {
            let delivery = match tokio::time::timeout(IDLE, queue.recv()).await {
                Ok(Some(delivery)) => delivery,
                Ok(None) => return,
                Err(_) => {
                    // Leave, unless an event came in meanwhile (events are queued under this lock).
                    let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
                    match queue.try_recv() {
                        Ok(delivery) => delivery,
                        Err(_) => {
                            workers.remove(&hook);
                            return;
                        }
                    }
                }
            };
            if !self.deliver(&tenant, &hook, &delivery).await {
                // Deleted: what waits for it goes too.
                let mut cancelled = 1;
                while queue.try_recv().is_ok() {
                    cancelled += 1;
                }
                self.stats.cancelled.fetch_add(cancelled, Ordering::Relaxed);
            }
        }
    }

    /// Makes every attempt at one event; `false` when the webhook no longer exists.
    async fn deliver(&self, tenant: &str, hook_id: &str, delivery: &Delivery) -> bool {
        let attempts = self.config.attempts.max(1);
        for attempt in 1..=attempts {
            // Read at each attempt: a deleted webhook gets nothing more.
            let failure = match self.store.webhook(tenant, hook_id).await {
                Ok(None) => return false,
                Ok(Some(hook)) => match self.post(&hook, delivery, attempt).await {
                    Ok(status) => {
                        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                        self.record(hook_id, &DeliveryOutcome::Delivered { status })
                            .await;
                        return true;
                    }
                    Err(failure) => failure,
                },
                Err(e) => (0, format!("reading the webhook: {e}")),
            };
            let (status, error) = failure;
            self.stats.attempts_failed.fetch_add(1, Ordering::Relaxed);
            if attempt == attempts {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                warn!(webhook = %hook_id, delivery = %delivery.id, attempts, "webhook delivery given up: {error}");
                self.record(hook_id, &DeliveryOutcome::Failed { status, error })
                    .await;
                return true;
            }
            info!(webhook = %hook_id, delivery = %delivery.id, attempt, "webhook delivery failed, trying again: {error}");
            self.record(hook_id, &DeliveryOutcome::Attempt { status, error })
                .await;
            tokio::time::sleep(self.backoff(attempt)).await;
        }
        true
    }

    /// One attempt: the HTTP status of a 2xx answer, else the status (0: none) and why.
    async fn post(
        &self,
        hook: &store::Webhook,
        delivery: &Delivery,
        attempt: u32,
    ) -> Result<u16, (u16, String)> {
        // A host given as an address is not resolved, so it is checked here (the policy may
        // have changed since the webhook was stored).
        self.config
            .policy
            .check_url(&hook.url)
            .map_err(|e| (0, e))?;
        let sent = self
            .client
            .post(&hook.url)
            .timeout(self.config.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature(&hook.secret, &delivery.body))
            .header(DELIVERY_HEADER, &delivery.id)
            .header(EVENT_HEADER, delivery.kind)
            .header(ATTEMPT_HEADER, attempt.to_string())
            .body(delivery.body.clone())
            .send()
            .await;
        match sent {
            Ok(answer) if answer.status().is_success() => Ok(answer.status().as_u16()),
            Ok(answer) => Err((
                answer.status().as_u16(),
                format!("the endpoint answered {}", answer.status()),
            )),
            Err(e) => Err((0, describe(&e, self.config.timeout))),
        }
    }

    /// The wait after failed attempt `attempt` (1, 2, …).
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .config
            .first_backoff
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(MAX_BACKOFF);
        base + base.mul_f64(rand::random::<f64>() / 4.0)
    }

    async fn record(&self, hook: &str, outcome: &DeliveryOutcome) {
        if let Err(e) = self.store.record_delivery(hook, outcome).await {
            warn!(webhook = %hook, "cannot record a webhook delivery: {e}");
        }
    }
}

/// A failed request in a sentence: its kind and every cause (where the address check says why).
fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("no answer within {} s", timeout.as_secs_f32());
    }
    let mut text = if error.is_connect() {
        "cannot connect".to_string()
    } else {
        "the request failed".to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

struct WebhookMetrics(Arc<WebhookStats>);

impl std::fmt::Debug for WebhookMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookMetrics").finish_non_exhaustive()
    }
}

impl Collector for WebhookMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let s = &self.0;
        for (name, help, value) in [
            (
                "delivered",
                "events accepted by a webhook endpoint",
                c(&s.delivered),
            ),
            (
                "attempts_failed",
                "webhook delivery attempts that failed (no answer within the timeout, or not 2xx)",
                c(&s.attempts_failed),
            ),
            (
                "failed",
                "events given up on after every attempt failed",
                c(&s.failed),
            ),
            (
                "dropped",
                "events not delivered because a webhook queue was full",
                c(&s.dropped),
            ),
            (
                "cancelled",
                "events whose webhook was deleted before delivery",
                c(&s.cancelled),
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                &format!("media_analyzer_webhooks_{name}"),
                help,
                None,
                MetricType::Counter,
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
