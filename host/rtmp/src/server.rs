//! The RTMP server: accepts connections, runs one [`Session`] per connection on its own task,
//! authorises publishes, and feeds the stream hub.
//!
//! Limits, so that no peer can cost another one its connection:
//! - Connections that have not started publishing ("pending") are capped in total and per peer
//!   address. When a peer address is at its cap, its own oldest pending connection is closed; when
//!   the server is at its cap, the oldest pending connection of the address holding the most is
//!   closed — so a flood from a few addresses evicts itself, not a real encoder mid-handshake.
//! - New connections per peer address are rate limited (a token bucket); over the rate a
//!   connection is closed at once, before it costs a handshake.
//! - Each pending connection has a deadline to complete the handshake and its publish request,
//!   and every connection is closed after `idle_timeout` without input.
//! - The session bounds every message before parsing it ([`crate::SessionLimits`]); a violation
//!   closes that connection, logged with its reason and counted by kind.
//! - Pending and publisher slots are RAII guards: even a panic in a connection task frees them.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use media::{MediaKind, PublishError, Publisher, StreamHub, StreamId};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::session::{Session, SessionError, SessionEvent, SessionLimits, Violation};

/// A granted publish: which stream the key publishes to.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishGrant {
    pub stream: StreamId,
    /// Whom the stream belongs to (a tenant, to the host): opaque here, handed to the hub so
    /// that whatever follows the stream knows it without a lookup.
    pub owner: String,
}

/// Decides whether a stream key may publish. The RTMP layer knows nothing else about tenants.
pub trait AuthorizePublish: Send + Sync + 'static {
    /// `Err` carries the reason given to the publisher and logged.
    fn authorize_publish<'a>(
        &'a self,
        app: &'a str,
        stream_key: &'a str,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Result<PublishGrant, String>> + Send + 'a>>;
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The application name in `rtmp://host/APP/KEY`.
    pub app: String,
    /// Connections not yet publishing; beyond this the oldest pending one of the busiest peer
    /// address is closed.
    pub max_pending: usize,
    /// Pending connections from one peer address; beyond this its oldest is closed.
    pub max_pending_per_ip: usize,
    /// New connections per second from one peer address (sustained)…
    pub connections_per_second_per_ip: f64,
    /// …and in a burst.
    pub connection_burst_per_ip: f64,
    /// Publishing connections; beyond this new publishes are refused.
    pub max_publishers: usize,
    /// Time a new connection has to complete the handshake and request a publish.
    pub handshake_timeout: Duration,
    /// A connection with no input for this long is closed.
    pub idle_timeout: Duration,
    /// Socket read buffer of a publishing connection (pending ones use a small one).
    pub read_buffer: usize,
    /// Message, buffer and picture size limits of every session.
    pub limits: SessionLimits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            app: "live".into(),
            max_pending: 256,
            max_pending_per_ip: 32,
            connections_per_second_per_ip: 20.0,
            connection_burst_per_ip: 64.0,
            max_publishers: 256,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            read_buffer: 64 * 1024,
            limits: SessionLimits::default(),
        }
    }
}

/// Read buffer of a connection that is not publishing yet.
const PENDING_READ_BUFFER: usize = 4096;

/// Counters exported as metrics.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub accepted: AtomicU64,
    pub evicted: AtomicU64,
    pub refused: AtomicU64,
    /// Connections closed at once because their peer address connected too often.
    pub rate_limited: AtomicU64,
    pub failed: AtomicU64,
    /// Connection tasks that panicked (their slots were freed).
    pub panicked: AtomicU64,
    pub publishing: AtomicU64,
    /// Connections closed for breaking a limit or the protocol, by [`Violation`].
    violations: [AtomicU64; Violation::ALL.len()],
}

impl ServerStats {
    pub fn violation(&self, kind: Violation) -> u64 {
        self.violations[kind as usize].load(Ordering::Relaxed)
    }

    fn count_violation(&self, kind: Violation) {
        self.violations[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The counters for `/metrics`: register with [`prometheus_client::registry::Registry::register_collector`].
    pub fn collector(self: Arc<Self>) -> Box<dyn Collector> {
        Box::new(RtmpMetrics(self))
    }
}

#[derive(Debug)]
struct RtmpMetrics(Arc<ServerStats>);

impl Collector for RtmpMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, help, value) in [
            ("connections", "RTMP connections accepted", c(&s.accepted)),
            (
                "evicted",
                "pending connections closed to admit others",
                c(&s.evicted),
            ),
            (
                "rate_limited",
                "connections closed: their address connected too often",
                c(&s.rate_limited),
            ),
            ("publish_refused", "publish requests refused", c(&s.refused)),
            (
                "failed",
                "connections that ended in an error before publishing",
                c(&s.failed),
            ),
            ("panics", "connection tasks that panicked", c(&s.panicked)),
        ] {
            let name = format!("media_analyzer_rtmp_{name}");
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                &name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let publishers = ConstGauge::new(c(&s.publishing) as i64);
        publishers.encode(encoder.encode_descriptor(
            "media_analyzer_rtmp_publishers",
            "connections publishing now",
            None,
            publishers.metric_type(),
        )?)?;
        let mut violations = encoder.encode_descriptor(
            "media_analyzer_rtmp_violations",
            "connections closed for breaking a limit or the protocol",
            None,
            MetricType::Counter,
        )?;
        for kind in Violation::ALL {
            ConstCounter::new(s.violation(kind))
                .encode(violations.encode_family(&[("kind", kind.label())])?)?;
        }
        Ok(())
    }
}

/// Pending connections, oldest first, with how many each peer address holds.
struct Pending {
    state: Mutex<PendingState>,
}

#[derive(Default)]
struct PendingState {
    queue: VecDeque<(u64, IpAddr, CancellationToken)>,
    per_ip: HashMap<IpAddr, usize>,
    /// Connection rate per address: tokens and when they were last refilled.
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl PendingState {
    fn remove_at(&mut self, index: usize) -> Option<(u64, IpAddr, CancellationToken)> {
        let entry = self.queue.remove(index)?;
        if let Some(n) = self.per_ip.get_mut(&entry.1) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&entry.1);
            }
        }
        Some(entry)
    }

    /// Closes the oldest pending connection of `ip`.
    fn evict_oldest_of(&mut self, ip: IpAddr) -> bool {
        let Some(index) = self.queue.iter().position(|(_, i, _)| *i == ip) else {
            return false;
        };
        if let Some((_, _, token)) = self.remove_at(index) {
            token.cancel();
        }
        true
    }
}

/// Whether a new connection was admitted, and what it cost others.
#[derive(Debug, PartialEq)]
enum Admission {
    Admitted { evicted: usize },
    RateLimited,
}

impl Pending {
    fn admit(
        &self,
        id: u64,
        ip: IpAddr,
        token: CancellationToken,
        config: &ServerConfig,
        now: Instant,
    ) -> Admission {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Token bucket per address; the map is pruned of full buckets when it grows.
        let (rate, burst) = (
            config.connections_per_second_per_ip.max(0.001),
            config.connection_burst_per_ip.max(1.0),
        );
        if s.buckets.len() > 4 * config.max_pending.max(64) {
            s.buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = s.buckets.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens < 1.0 {
            return Admission::RateLimited;
        }
        *tokens -= 1.0;

        let mut evicted = 0;
        while s.per_ip.get(&ip).copied().unwrap_or(0) >= config.max_pending_per_ip.max(1) {
            if !s.evict_oldest_of(ip) {
                break;
            }
            evicted += 1;
        }
        while s.queue.len() >= config.max_pending.max(1) {
            // The address holding the most; among equals, the one that connected last (the
            // flood arriving now), never an arbitrary one: hash order could pick the encoder.
            let most = s.per_ip.values().copied().max().unwrap_or(0);
            let busiest = s
                .queue
                .iter()
                .rev()
                .find(|(_, ip, _)| s.per_ip.get(ip) == Some(&most))
                .map(|(_, ip, _)| *ip);
            match busiest {
                Some(busiest) if s.evict_oldest_of(busiest) => evicted += 1,
                _ => break,
            }
        }
        s.queue.push_back((id, ip, token));
        *s.per_ip.entry(ip).or_insert(0) += 1;
        Admission::Admitted { evicted }
    }

    fn leave(&self, id: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = s.queue.iter().position(|(i, _, _)| *i == id) {
            s.remove_at(index);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().unwrap().queue.len()
    }
}

/// A connection's place among the pending ones; leaving (or unwinding) frees it.
struct PendingSlot {
    id: u64,
    pending: Arc<Pending>,
}

impl PendingSlot {
    /// The connection publishes now: it no longer counts as pending (leaving twice is harmless).
    fn leave(&self) {
        self.pending.leave(self.id);
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.leave();
    }
}

/// One of `max_publishers` slots; dropping it (also while unwinding) frees it.
struct PublisherSlot {
    stats: Arc<ServerStats>,
}

impl PublisherSlot {
    fn acquire(stats: &Arc<ServerStats>, max: usize) -> Option<Self> {
        stats
            .publishing
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max as u64).then_some(n + 1)
            })
            .ok()?;
        Some(Self {
            stats: stats.clone(),
        })
    }
}

impl Drop for PublisherSlot {
    fn drop(&mut self) {
        self.stats.publishing.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A publishing connection: the hub publisher and the slot it holds, released together.
struct Publishing {
    publisher: Publisher,
    _slot: PublisherSlot,
}

/// Serves RTMP on `listener` until `shutdown` is cancelled, then closes every connection (ending
/// their streams cleanly) and returns once all connection tasks have finished.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    authorize: Arc<dyn AuthorizePublish>,
    hub: StreamHub,
    stats: Arc<ServerStats>,
    shutdown: CancellationToken,
) {
    let config = Arc::new(config);
    let pending = Arc::new(Pending {
        state: Mutex::new(PendingState::default()),
    });
    let mut connections = JoinSet::new();
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done && e.is_panic() {
                    stats.panicked.fetch_add(1, Ordering::Relaxed);
                    warn!("RTMP connection task panicked (its slots were freed): {e}");
                }
            }
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!("RTMP accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                next_id += 1;
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                let token = shutdown.child_token();
                match pending.admit(next_id, peer.ip(), token.clone(), &config, Instant::now()) {
                    Admission::RateLimited => {
                        stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                        debug!(%peer, "RTMP connection refused: this address connects too often");
                        drop(socket);
                        continue;
                    }
                    Admission::Admitted { evicted } if evicted > 0 => {
                        stats.evicted.fetch_add(evicted as u64, Ordering::Relaxed);
                        debug!("closed {evicted} pending RTMP connection(s) to admit {peer}");
                    }
                    Admission::Admitted { .. } => {}
                }
                let connection = Connection {
                    peer,
                    config: config.clone(),
                    authorize: authorize.clone(),
                    hub: hub.clone(),
                    stats: stats.clone(),
                    pending: PendingSlot { id: next_id, pending: pending.clone() },
                };
                connections.spawn(
                    connection
                        .serve(socket, token)
                        .instrument(info_span!("rtmp", %peer)),
                );
            }
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

struct Connection {
    peer: SocketAddr,
    config: Arc<ServerConfig>,
    authorize: Arc<dyn AuthorizePublish>,
    hub: StreamHub,
    stats: Arc<ServerStats>,
    pending: PendingSlot,
}

#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("no handshake/publish within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("no input for {0:?}")]
    Idle(Duration),
    #[error("publish refused: {0}")]
    Refused(String),
}

impl Connection {
    async fn serve(self, socket: TcpStream, token: CancellationToken) {
        let _ = socket.set_nodelay(true);
        let mut publishing = None;
        let result = self.pump(socket, &token, &mut publishing).await;
        let stream = publishing
            .as_ref()
            .map(|p: &Publishing| p.publisher.stream().to_string());
        match (&result, stream) {
            (Ok(()), Some(stream)) => info!(%stream, "publisher finished"),
            (Ok(()), None) => debug!("connection closed"),
            (Err(ConnectionError::Refused(reason)), _) => {
                warn!(reason = %reason, "publish refused")
            }
            (Err(ConnectionError::Session(e)), stream) => {
                self.stats.count_violation(e.violation());
                if stream.is_none() {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                }
                warn!(
                    stream = stream.as_deref().unwrap_or("-"),
                    kind = e.violation().label(),
                    "RTMP connection closed: {e}"
                )
            }
            (Err(e), Some(stream)) => warn!(%stream, "publisher dropped: {e}"),
            (Err(e), None) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                info!("connection closed: {e}")
            }
        }
        // Dropping the publisher ends the stream for every subscriber (HLS closes its segment),
        // and frees its slot; the pending slot is freed when `self` drops.
        drop(publishing);
    }

    async fn pump(
        &self,
        mut socket: TcpStream,
        token: &CancellationToken,
        publishing: &mut Option<Publishing>,
    ) -> Result<(), ConnectionError> {
        let mut session = Session::with_limits(Some(self.config.app.clone()), self.config.limits);
        let mut buf = vec![0u8; PENDING_READ_BUFFER];
        let handshake_deadline = Instant::now() + self.config.handshake_timeout;
        loop {
            let establishing = session.is_establishing();
            let deadline = if establishing {
                handshake_deadline
            } else {
                Instant::now() + self.config.idle_timeout
            };
            let n = tokio::select! {
                _ = token.cancelled() => {
                    return Ok(());
                }
                read = timeout_at(deadline, socket.read(&mut buf)) => match read {
                    Ok(r) => r?,
                    Err(_) if establishing => return Err(ConnectionError::HandshakeTimeout(self.config.handshake_timeout)),
                    Err(_) => return Err(ConnectionError::Idle(self.config.idle_timeout)),
                },
            };
            if n == 0 {
                return Ok(());
            }
            let events = match session.handle_input(&buf[..n]) {
                Ok(events) => events,
                Err(e) => {
                    // Tell the peer why where the protocol allows it (e.g. a refused connect).
                    let out = session.take_outbound();
                    let _ = socket.write_all(&out).await;
                    return Err(e.into());
                }
            };
            for event in events {
                match event {
                    SessionEvent::PublishRequested { app, stream_key } => {
                        match self.start_publish(&app, &stream_key).await {
                            Ok(p) => {
                                session.accept_publish()?;
                                info!(stream = %p.publisher.stream(), "publishing");
                                self.pending.leave();
                                buf.resize(self.config.read_buffer.max(PENDING_READ_BUFFER), 0);
                                *publishing = Some(p);
                            }
                            Err(reason) => {
                                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                                session.reject_publish(&reason)?;
                                let out = session.take_outbound();
                                let _ = socket.write_all(&out).await;
                                let _ = socket.shutdown().await;
                                return Err(ConnectionError::Refused(reason));
                            }
                        }
                    }
                    SessionEvent::InfoChanged(info) => {
                        if let Some(p) = publishing.as_mut() {
                            p.publisher.set_info(info);
                        }
                    }
                    SessionEvent::Media(packet) => {
                        if let Some(p) = publishing.as_mut() {
                            if packet.kind == MediaKind::Video && packet.is_config {
                                debug!("video configuration received");
                            }
                            p.publisher.send(packet).await;
                        }
                    }
                    SessionEvent::PublishFinished => {
                        // End the stream now; the peer closes the socket when it is ready.
                        if let Some(p) = publishing.take() {
                            info!(stream = %p.publisher.stream(), "publisher finished");
                        }
                    }
                }
            }
            let out = session.take_outbound();
            if !out.is_empty() {
                socket.write_all(&out).await?;
            }
            if session.is_finished() {
                return Ok(());
            }
        }
    }

    async fn start_publish(&self, app: &str, stream_key: &str) -> Result<Publishing, String> {
        let slot =
            PublisherSlot::acquire(&self.stats, self.config.max_publishers).ok_or_else(|| {
                format!(
                    "server is at its limit of {} publishers",
                    self.config.max_publishers
                )
            })?;
        let grant = self
            .authorize
            .authorize_publish(app, stream_key, self.peer)
            .await?;
        let publisher = self
            .hub
            .publish(&grant.stream, &grant.owner)
            .map_err(|e| match e {
                PublishError::AlreadyPublishing(_) => {
                    "this stream key is already publishing; stop the other encoder first"
                        .to_string()
                }
            })?;
        Ok(Publishing {
            publisher,
            _slot: slot,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_pending: usize, per_ip: usize) -> ServerConfig {
        ServerConfig {
            max_pending,
            max_pending_per_ip: per_ip,
            connections_per_second_per_ip: 1000.0,
            connection_burst_per_ip: 1000.0,
            ..ServerConfig::default()
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_flood_from_one_address_evicts_its_own_connections_only() {
        let pending = Pending {
            state: Mutex::new(PendingState::default()),
        };
        let config = config(8, 4);
        let now = Instant::now();
        let encoder = CancellationToken::new();
        assert_eq!(
            pending.admit(1, ip(1), encoder.clone(), &config, now),
            Admission::Admitted { evicted: 0 }
        );
        let mut flood = Vec::new();
        for id in 2..200 {
            let t = CancellationToken::new();
            pending.admit(id, ip(2), t.clone(), &config, now);
            flood.push(t);
        }
        assert!(
            !encoder.is_cancelled(),
            "the encoder mid-handshake was evicted"
        );
        assert_eq!(flood.iter().filter(|t| !t.is_cancelled()).count(), 4);
        // Many addresses: the server cap evicts from the address holding the most.
        for id in 200..210 {
            pending.admit(id, ip(id as u8), CancellationToken::new(), &config, now);
        }
        assert!(!encoder.is_cancelled());
        assert!(pending.len() <= 8);
        pending.leave(1);
        assert!(pending.len() <= 7);
    }

    #[test]
    fn connections_per_address_are_rate_limited_and_refill() {
        let pending = Pending {
            state: Mutex::new(PendingState::default()),
        };
        let config = ServerConfig {
            connections_per_second_per_ip: 10.0,
            connection_burst_per_ip: 5.0,
            ..config(100, 100)
        };
        let now = Instant::now();
        let admitted = (0..20)
            .filter(|id| {
                pending.admit(*id, ip(1), CancellationToken::new(), &config, now)
                    != Admission::RateLimited
            })
            .count();
        assert_eq!(admitted, 5, "the burst");
        assert_ne!(
            pending.admit(99, ip(2), CancellationToken::new(), &config, now),
            Admission::RateLimited,
            "other addresses are not affected"
        );
        let later = now + Duration::from_millis(300);
        let admitted = (20..30)
            .filter(|id| {
                pending.admit(*id, ip(1), CancellationToken::new(), &config, later)
                    != Admission::RateLimited
            })
            .count();
        assert_eq!(admitted, 3, "10/s for 0.3 s");
    }

    #[tokio::test]
    async fn a_panicking_connection_frees_its_publisher_and_pending_slots() {
        let stats = Arc::new(ServerStats::default());
        let pending = Arc::new(Pending {
            state: Mutex::new(PendingState::default()),
        });
        let config = config(8, 8);
        let mut tasks = JoinSet::new();
        for id in 0..3 {
            pending.admit(id, ip(1), CancellationToken::new(), &config, Instant::now());
            let slot = PublisherSlot::acquire(&stats, 3).unwrap();
            let pending_slot = PendingSlot {
                id,
                pending: pending.clone(),
            };
            tasks.spawn(async move {
                let _held = (slot, pending_slot);
                panic!("a bug in a connection task");
            });
        }
        while let Some(done) = tasks.join_next().await {
            assert!(done.unwrap_err().is_panic());
        }
        assert_eq!(stats.publishing.load(Ordering::Relaxed), 0);
        assert_eq!(pending.len(), 0);
        assert!(PublisherSlot::acquire(&stats, 3).is_some());
    }

    #[test]
    fn publisher_slots_never_exceed_the_limit() {
        let stats = Arc::new(ServerStats::default());
        let held: Vec<_> = (0..10)
            .filter_map(|_| PublisherSlot::acquire(&stats, 4))
            .collect();
        assert_eq!(held.len(), 4);
        drop(held);
        assert_eq!(stats.publishing.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn violations_are_rendered_by_kind() {
        let stats = Arc::new(ServerStats::default());
        stats.count_violation(Violation::AmfDepth);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(stats.collector());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("media_analyzer_rtmp_violations_total{kind=\"amf_depth\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("media_analyzer_rtmp_evicted_total 0\n"));
    }
}
