//! The RTMP server: accepts connections, runs one [`Session`] per connection on its own task,
//! authorises publishes, and feeds the stream hub.
//!
//! Limits: connections that have not started publishing ("pending") are capped; when the cap is
//! reached the oldest pending connection is closed to make room, so a flood of idle sockets can't
//! lock out a real encoder. Each pending connection also has a deadline to complete the handshake
//! and its publish request, and every connection is closed after `idle_timeout` without input.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use media::{MediaKind, PublishError, Publisher, StreamHub, StreamId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::session::{Session, SessionError, SessionEvent};

/// A granted publish: which stream the key publishes to.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishGrant {
    pub stream: StreamId,
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
    /// Connections not yet publishing; beyond this the oldest pending one is closed.
    pub max_pending: usize,
    /// Publishing connections; beyond this new publishes are refused.
    pub max_publishers: usize,
    /// Time a new connection has to complete the handshake and request a publish.
    pub handshake_timeout: Duration,
    /// A connection with no input for this long is closed.
    pub idle_timeout: Duration,
    /// Capacity of the hub queue for each packager (packets).
    pub read_buffer: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            app: "live".into(),
            max_pending: 256,
            max_publishers: 256,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            read_buffer: 64 * 1024,
        }
    }
}

/// Counters exported as metrics.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub accepted: AtomicU64,
    pub evicted: AtomicU64,
    pub refused: AtomicU64,
    pub failed: AtomicU64,
    pub publishing: AtomicU64,
}

struct Pending {
    queue: Mutex<VecDeque<(u64, CancellationToken)>>,
}

impl Pending {
    fn admit(&self, id: u64, token: CancellationToken, max: usize) -> bool {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let mut evicted = false;
        while q.len() >= max.max(1) {
            if let Some((_, oldest)) = q.pop_front() {
                oldest.cancel();
                evicted = true;
            }
        }
        q.push_back((id, token));
        evicted
    }
    fn leave(&self, id: u64) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(i, _)| *i != id);
    }
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
        queue: Mutex::new(VecDeque::new()),
    });
    let mut connections = JoinSet::new();
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done && e.is_panic() {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    warn!("RTMP connection task panicked: {e}");
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
                if pending.admit(next_id, token.clone(), config.max_pending) {
                    stats.evicted.fetch_add(1, Ordering::Relaxed);
                    debug!("closed the oldest pending RTMP connection to admit {peer}");
                }
                let connection = Connection {
                    id: next_id,
                    peer,
                    config: config.clone(),
                    authorize: authorize.clone(),
                    hub: hub.clone(),
                    stats: stats.clone(),
                    pending: pending.clone(),
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
    id: u64,
    peer: SocketAddr,
    config: Arc<ServerConfig>,
    authorize: Arc<dyn AuthorizePublish>,
    hub: StreamHub,
    stats: Arc<ServerStats>,
    pending: Arc<Pending>,
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
        let mut publisher = None;
        let result = self.pump(socket, &token, &mut publisher).await;
        self.pending.leave(self.id);
        let stream = publisher
            .as_ref()
            .map(|p: &Publisher| p.stream().to_string());
        if publisher.is_some() {
            self.stats.publishing.fetch_sub(1, Ordering::Relaxed);
        }
        match (&result, stream) {
            (Ok(()), Some(stream)) => info!(%stream, "publisher finished"),
            (Ok(()), None) => debug!("connection closed"),
            (Err(ConnectionError::Refused(reason)), _) => {
                warn!(reason = %reason, "publish refused")
            }
            (Err(e), Some(stream)) => warn!(%stream, "publisher dropped: {e}"),
            (Err(e), None) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                info!("connection closed: {e}")
            }
        }
        // Dropping the publisher ends the stream for every subscriber (HLS closes its segment).
        drop(publisher);
    }

    async fn pump(
        &self,
        mut socket: TcpStream,
        token: &CancellationToken,
        publisher: &mut Option<Publisher>,
    ) -> Result<(), ConnectionError> {
        let mut session = Session::new(Some(self.config.app.clone()));
        let mut buf = vec![0u8; self.config.read_buffer.max(4096)];
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
                                info!(stream = %p.stream(), "publishing");
                                self.pending.leave(self.id);
                                self.stats.publishing.fetch_add(1, Ordering::Relaxed);
                                *publisher = Some(p);
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
                        if let Some(p) = publisher.as_mut() {
                            p.set_info(info);
                        }
                    }
                    SessionEvent::Media(packet) => {
                        if let Some(p) = publisher.as_mut() {
                            if packet.kind == MediaKind::Video && packet.is_config {
                                debug!("video configuration received");
                            }
                            p.send(packet).await;
                        }
                    }
                    SessionEvent::PublishFinished => {
                        // End the stream now; the peer closes the socket when it is ready.
                        if let Some(p) = publisher.take() {
                            self.stats.publishing.fetch_sub(1, Ordering::Relaxed);
                            info!(stream = %p.stream(), "publisher finished");
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

    async fn start_publish(&self, app: &str, stream_key: &str) -> Result<Publisher, String> {
        if self.stats.publishing.load(Ordering::Relaxed) >= self.config.max_publishers as u64 {
            return Err(format!(
                "server is at its limit of {} publishers",
                self.config.max_publishers
            ));
        }
        let grant = self
            .authorize
            .authorize_publish(app, stream_key, self.peer)
            .await?;
        self.hub.publish(&grant.stream).map_err(|e| match e {
            PublishError::AlreadyPublishing(_) => {
                "this stream key is already publishing; stop the other encoder first".to_string()
            }
        })
    }
}
