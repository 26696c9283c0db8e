//! `GET /api/v1/streams/{id}/events`: a WebSocket of what happens on a stream — detections per
//! analysed frame, alerts, stream state — as JSON text messages, one per event.
//!
//! Fan-out: the host subscribes to the bus once; each message is serialised once and put into the
//! stream's ring (`tokio::sync::broadcast`, bounded). Every viewer reads the ring at its own pace:
//! a viewer that falls more than a ring behind is told so (`{"type":"lagged","skipped":N}`) and
//! carries on from the newest — it never slows the others, and it costs no per-viewer queue.
//!
//! Resume: `?since=SEQ` first sends what the store kept after frame SEQ, then live events (those
//! already sent are skipped). After a bus outage every viewer is re-synchronised from the store.
//! Keep-alive: a ping every 15 s; a viewer that answers nothing for 45 s is closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::response::Response;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::error::{ApiPath, ApiQuery};
use crate::{ApiError, AppState};

/// Events a stream's ring holds (≈ 8 s of 30 fps analysis) before slow viewers lag.
const RING: usize = 256;
const PING_EVERY: Duration = Duration::from_secs(15);
const SILENCE_LIMIT: Duration = Duration::from_secs(45);
/// A viewer whose socket takes longer than this to accept one message is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Rows read from the store per replay query.
const REPLAY_PAGE: u32 = 2000;

/// What a stream's ring carries.
#[derive(Debug, Clone)]
enum Item {
    /// One event as the viewer receives it; `seq` for frame events (to skip replayed ones).
    Event { seq: Option<u64>, json: Utf8Bytes },
    /// The bus lost messages: re-read the store from the last frame sent.
    Resync,
}

/// The per-stream rings of one API host.
#[derive(Clone)]
pub struct Viewers {
    rings: Arc<Mutex<HashMap<String, broadcast::Sender<Item>>>>,
    stats: Arc<ViewerStats>,
    /// Ids of API keys revoked since the sockets opened (their sockets close).
    revoked: broadcast::Sender<String>,
}

impl Default for Viewers {
    fn default() -> Self {
        Self {
            rings: Default::default(),
            stats: Default::default(),
            revoked: broadcast::channel(REVOCATIONS).0,
        }
    }
}

/// Revocations a socket may miss before it re-checks its key in the store.
const REVOCATIONS: usize = 64;

/// The close code sent when the API key a socket was opened with is revoked (policy violation).
pub const KEY_REVOKED_CLOSE: u16 = 1008;

#[derive(Debug, Default)]
pub struct ViewerStats {
    pub connected: std::sync::atomic::AtomicU64,
    pub sent: std::sync::atomic::AtomicU64,
    pub lagged: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Viewers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewers").finish_non_exhaustive()
    }
}

impl Viewers {
    /// An API key was revoked: the sockets opened with it close (on this host; other hosts hear
    /// of it through the bus, [`Self::run`]).
    pub fn key_revoked(&self, key_id: &str) {
        let _ = self.revoked.send(key_id.to_string());
    }

    fn ring(&self, stream: &str) -> broadcast::Receiver<Item> {
        let mut rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        rings
            .entry(stream.to_string())
            .or_insert_with(|| broadcast::channel(RING).0)
            .subscribe()
    }

    /// Watches the stream's events for a `pipeline` event (see [`PipelineWatch::applied`]).
    pub fn watch(&self, stream: &str) -> PipelineWatch {
        PipelineWatch(self.ring(stream))
    }

    fn deliver(&self, stream: &str, item: Item) {
        let mut rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ring) = rings.get(stream)
            && ring.send(item).is_err()
        {
            rings.remove(stream); // nobody watches any more
        }
    }

    /// Feeds the rings from a bus subscription until it closes.
    pub async fn run(self, mut deliveries: mpsc::Receiver<bus::Delivery>) {
        while let Some(delivery) = deliveries.recv().await {
            match delivery {
                bus::Delivery::Message(envelope) => {
                    if let bus::Event::Control(control) = &envelope.event {
                        if let bus::Control::KeyRevoked { key } = control {
                            self.key_revoked(key);
                        }
                        continue; // signals are for hosts, not viewers
                    }
                    let json = match serde_json::to_string(&envelope.event) {
                        Ok(j) => j,
                        Err(e) => {
                            warn!("cannot serialise an event: {e}");
                            continue;
                        }
                    };
                    self.deliver(
                        envelope.event.stream(),
                        Item::Event {
                            // Frames' results are what a replay resends and a resume counts;
                            // an alert comes after its frame's results, with the same `seq`.
                            seq: match &envelope.event {
                                bus::Event::Detections(d) => Some(d.seq),
                                _ => None,
                            },
                            json: json.into(),
                        },
                    );
                }
                bus::Delivery::Resubscribed => {
                    let streams: Vec<String> = {
                        let rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
                        rings.keys().cloned().collect()
                    };
                    for stream in streams {
                        self.deliver(&stream, Item::Resync);
                    }
                }
            }
        }
    }

    pub fn stats(&self) -> &ViewerStats {
        &self.stats
    }

    /// The viewers' counters for `/metrics`.
    pub fn collector(&self) -> Box<dyn Collector> {
        Box::new(ViewerMetrics(self.stats.clone()))
    }
}

#[derive(Debug)]
struct ViewerMetrics(Arc<ViewerStats>);

impl Collector for ViewerMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.0;
        let viewers = ConstGauge::new(s.connected.load(Relaxed) as i64);
        viewers.encode(encoder.encode_descriptor(
            "media_analyzer_ws_viewers",
            "WebSocket viewers connected",
            None,
            viewers.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "media_analyzer_ws_messages",
                "events sent to WebSocket viewers",
                s.sent.load(Relaxed),
            ),
            (
                "media_analyzer_ws_lagged",
                "times a viewer fell behind and skipped events",
                s.lagged.load(Relaxed),
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// A stream's events from the moment of [`Viewers::watch`].
pub struct PipelineWatch(broadcast::Receiver<Item>);

impl PipelineWatch {
    /// The first frame of the pipeline set by `change`, when its `pipeline` event arrives within
    /// `wait`.
    pub async fn applied(mut self, change: &str, wait: Duration) -> Option<u64> {
        let deadline = Instant::now() + wait;
        loop {
            let item = match tokio::time::timeout_at(deadline, self.0.recv()).await {
                Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
                Ok(Ok(item)) => item,
            };
            let Item::Event { seq: None, json } = item else {
                continue;
            };
            if let Ok(bus::Event::Pipeline(applied)) = serde_json::from_str(json.as_str())
                && applied.change == change
            {
                return Some(applied.seq);
            }
        }
    }
}

/// One analysed frame: its number, media time and when it was analysed (Unix ms).
#[derive(Debug, Clone, Copy)]
pub struct AnalysedFrame {
    pub seq: u64,
    pub pts_ms: i64,
    pub wallclock_ms: i64,
    /// When the frame's video reached the host (live analysis only).
    pub ingested_ms: Option<i64>,
    /// Where the frame's time went (live analysis only).
    pub timing: Option<bus::FrameTiming>,
}

/// The `detections` event of one analysed frame from its stored rows (empty when nothing was
/// found), for the replay from the store (live events are built by analysis,
/// `analysis::FrameAnalysis::event`, in the same shape).
pub fn detections_event(
    stream: &str,
    frame: AnalysedFrame,
    size: (u32, u32),
    rows: &[store::DetectionRecord],
) -> bus::Event {
    bus::Event::Detections(bus::FrameDetections {
        effects: Vec::new(),
        effects_failed: Vec::new(),
        scene: None,
        stream: stream.to_string(),
        seq: frame.seq,
        pts_ms: frame.pts_ms,
        wallclock: crate::streams::rfc3339_ms(frame.wallclock_ms),
        ingested: frame.ingested_ms.map(crate::streams::rfc3339_ms),
        timing: frame.timing,
        width: size.0,
        height: size.1,
        detections: rows.iter().map(|d| d.detection.clone()).collect(),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Playback token (instead of a bearer API key), as for HLS.
    #[param(max_length = 256)]
    token: Option<String>,
    /// Resume: first send what the store kept after this frame number.
    #[param(minimum = 0)]
    since: Option<i64>,
}

/// A message a viewer may send: `{"type":"renew","token":"…"}` replaces the playback token the
/// socket was opened with (before it expires, when the socket is closed).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ViewerMessage {
    Renew { token: String },
}

/// The close code sent when a viewer's playback token expires (policy violation).
pub const TOKEN_EXPIRED_CLOSE: u16 = 1008;

/// WebSocket of a stream's events (detections, alerts, stream state, lagged).
///
/// A socket opened with a playback token is closed (code 1008) when the token expires, unless
/// the viewer sends `{"type":"renew","token":"NEW"}` with a newer token for the same stream first;
/// the server answers `{"type":"renewed","expires_at":…}`. A socket opened with an API key stays
/// until the key is revoked (closed with code 1008, on every API host).
#[utoipa::path(get, path = "/api/v1/streams/{id}/events", tag = "analysis",
    params(("id" = String, Path, description = "stream id", max_length = 64), EventsQuery),
    responses((status = 101, description = "WebSocket: one JSON event per text message"),
        (status = 400, description = "not a WebSocket upgrade, or a bad parameter", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 429, description = "rate limited (see Retry-After)", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<EventsQuery>,
    parts: Parts,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    if !crate::hls::valid_stream_id(&id) {
        return Err(ApiError::NotFound("stream"));
    }
    let since = match query.since {
        Some(s) if s < 0 => {
            return Err(ApiError::BadRequest(
                "since must be a frame number, 0 or more".into(),
            ));
        }
        s => s.map(|s| s as u64),
    };
    let access = crate::hls::authorize(&state, &parts, &id, query.token.as_deref()).await?;
    let stream = state
        .store
        .stream_by_id(&id)
        .await?
        .ok_or(ApiError::NotFound("stream"))?;
    let upgrade = upgrade.map_err(|_| {
        ApiError::BadRequest(
            "this is a WebSocket endpoint: connect with Connection: Upgrade, Upgrade: websocket"
                .into(),
        )
    })?;
    let size = stream.video.map(|v| (v.width, v.height)).unwrap_or((0, 0));
    let viewers = state.viewers.clone();
    let ring = viewers.ring(&id);
    let store = state.store.clone();
    let token_key = state.token_key.clone();
    let revocations = viewers.revoked.subscribe();
    Ok(upgrade
        // A viewer only sends pongs, renewals and a close: small buffers keep a viewer's memory
        // low (tungstenite's default read buffer alone is 128 KiB).
        .read_buffer_size(4 * 1024)
        .write_buffer_size(8 * 1024)
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| async move {
            use std::sync::atomic::Ordering::Relaxed;
            viewers.stats.connected.fetch_add(1, Relaxed);
            let mut viewer = Viewer {
                socket,
                store,
                stream: id,
                size,
                last_seq: since,
                stats: viewers.stats.clone(),
                token_key,
                expires_unix: match &access {
                    crate::hls::Access::Token { expires_unix } => Some(*expires_unix),
                    crate::hls::Access::Key { .. } => None,
                },
                key_id: match access {
                    crate::hls::Access::Token { .. } => None,
                    crate::hls::Access::Key { key_id } => Some(key_id),
                },
            };
            if let Err(e) = viewer.serve(ring, revocations, since.is_some()).await {
                debug!(stream = %viewer.stream, "viewer left: {e}");
            }
            viewers.stats.connected.fetch_sub(1, Relaxed);
        }))
}

struct Viewer {
    socket: WebSocket,
    store: store::Store,
    stream: String,
    size: (u32, u32),
    /// The last frame sent (events for frames up to it are not sent again).
    last_seq: Option<u64>,
    stats: Arc<ViewerStats>,
    token_key: crate::TokenKey,
    /// When the playback token the viewer holds expires (Unix seconds); `None` for an API key.
    expires_unix: Option<i64>,
    /// The API key the socket was opened with (`None` for a playback token).
    key_id: Option<String>,
}

/// Whether the API key a socket was opened with is still valid (a store error counts as valid:
/// the socket is not closed for the store's trouble).
async fn key_stands(store: store::Store, key_id: Option<String>) -> bool {
    match key_id {
        Some(id) => store.api_key_active(&id).await.unwrap_or(true),
        None => true,
    }
}

/// The instant a Unix time (seconds) falls on, by the tokio clock.
fn instant_at(unix_s: i64) -> Instant {
    let left_ms = unix_s
        .saturating_mul(1000)
        .saturating_sub(store::now_ms())
        .max(0);
    Instant::now() + Duration::from_millis(left_ms as u64)
}

impl Viewer {
    async fn serve(
        &mut self,
        mut ring: broadcast::Receiver<Item>,
        mut revocations: broadcast::Receiver<String>,
        resume: bool,
    ) -> Result<(), String> {
        if resume {
            self.replay().await?;
        }
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        let mut heard = Instant::now();
        // Far enough never to fire for a viewer that holds an API key.
        let never = Instant::now() + Duration::from_secs(100 * 365 * 86_400);
        loop {
            let expiry = self.expires_unix.map(instant_at).unwrap_or(never);
            tokio::select! {
                _ = tokio::time::sleep_until(expiry) => {
                    self.close(TOKEN_EXPIRED_CLOSE, "playback token expired").await;
                    return Ok(());
                }
                revoked = revocations.recv(), if self.key_id.is_some() => {
                    let ours = match revoked {
                        Ok(key) => self.key_id.as_deref() == Some(key.as_str()),
                        // Missed some: ask the store whether our key still stands.
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            !key_stands(self.store.clone(), self.key_id.clone()).await
                        }
                        Err(broadcast::error::RecvError::Closed) => false,
                    };
                    if ours {
                        self.close(KEY_REVOKED_CLOSE, "API key revoked").await;
                        return Ok(());
                    }
                }
                item = ring.recv() => match item {
                    Ok(Item::Event { seq, json }) => {
                        if let (Some(seq), Some(last)) = (seq, self.last_seq)
                            && seq <= last
                        {
                            continue; // already sent by the replay
                        }
                        self.send(json).await?;
                        if seq.is_some() {
                            self.last_seq = seq;
                        }
                    }
                    Ok(Item::Resync) => self.replay().await?,
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        self.stats.lagged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let note = serde_json::json!({
                            "type": "lagged", "stream": self.stream, "skipped": skipped,
                            "resume_from": self.last_seq,
                        });
                        self.send(note.to_string().into()).await?;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
                incoming = self.socket.recv() => match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Ok(Message::Text(text))) => {
                        heard = Instant::now();
                        self.on_message(&text).await?;
                    }
                    Some(Ok(_)) => heard = Instant::now(), // pong, or anything else: alive
                },
                _ = ping.tick() => {
                    if heard.elapsed() > SILENCE_LIMIT {
                        return Err("no answer to pings".into());
                    }
                    self.send_raw(Message::Ping(Default::default())).await?;
                }
            }
        }
    }

    /// A viewer's own message: a token renewal; anything else is answered with an error event.
    async fn on_message(&mut self, text: &str) -> Result<(), String> {
        let reply = match serde_json::from_str::<ViewerMessage>(text) {
            Ok(ViewerMessage::Renew { token }) if self.expires_unix.is_some() => {
                match self
                    .token_key
                    .check(&token, &self.stream, store::now_ms() / 1000)
                {
                    Ok(expires) => {
                        let current = self.expires_unix.unwrap_or(expires);
                        self.expires_unix = Some(current.max(expires));
                        serde_json::json!({
                            "type": "renewed", "stream": self.stream,
                            "expires_at": crate::streams::rfc3339_ms(current.max(expires) * 1000),
                        })
                    }
                    Err(_) => serde_json::json!({
                        "type": "error", "stream": self.stream,
                        "message": "invalid or expired playback token",
                    }),
                }
            }
            Ok(ViewerMessage::Renew { .. }) => serde_json::json!({
                "type": "error", "stream": self.stream,
                "message": "this socket was opened with an API key and does not expire",
            }),
            Err(_) => serde_json::json!({
                "type": "error", "stream": self.stream,
                "message": "unknown message: send {\"type\":\"renew\",\"token\":…}",
            }),
        };
        self.send_raw(Message::Text(reply.to_string().into())).await
    }

    /// Tells the viewer why the socket ends (a viewer that stopped reading is not waited for).
    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = axum::extract::ws::CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = self.send_raw(Message::Close(Some(frame))).await;
    }

    async fn send(&mut self, json: Utf8Bytes) -> Result<(), String> {
        self.send_raw(Message::Text(json)).await?;
        self.stats
            .sent
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn send_raw(&mut self, message: Message) -> Result<(), String> {
        match tokio::time::timeout(SEND_TIMEOUT, self.socket.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the viewer stopped reading".into()),
        }
    }

    /// Sends what the store kept after `last_seq`, one `detections` event per frame.
    async fn replay(&mut self) -> Result<(), String> {
        loop {
            let after = self
                .last_seq
                .map(|s| i64::try_from(s).unwrap_or(i64::MAX))
                .unwrap_or(-1);
            let rows = self
                .store
                .detections_after_seq(&self.stream, after, REPLAY_PAGE)
                .await
                .map_err(|e| format!("replay: {e}"))?;
            if rows.is_empty() {
                return Ok(());
            }
            for frame in rows.chunk_by(|a, b| a.seq == b.seq) {
                let first = &frame[0];
                let analysed = AnalysedFrame {
                    seq: first.seq.max(0) as u64,
                    pts_ms: first.pts_ms,
                    wallclock_ms: first.wallclock,
                    ingested_ms: None,
                    timing: None,
                };
                let event = detections_event(&self.stream, analysed, self.size, frame);
                let json = serde_json::to_string(&event).map_err(|e| e.to_string())?;
                self.send(json.into()).await?;
                self.last_seq = Some(first.seq.max(0) as u64);
            }
        }
    }
}
