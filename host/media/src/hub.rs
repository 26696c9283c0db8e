//! The stream hub: where ingest publishes a stream's media and where packagers and analysers
//! subscribe to it. Each stream has at most one publisher. Every subscription is bounded and
//! states its overflow policy:
//!
//! - [`Overflow::Backpressure`] (HLS): never drops; a full queue makes the publisher wait, which
//!   slows the RTMP reader and, through TCP, the encoder. Segments are never lost.
//! - [`Overflow::DropOldest`] (analysis): a full queue drops its oldest packet and counts it.
//!
//! A new subscriber first receives the codec configuration and, during the stream's first
//! seconds ([`GOP_CACHE_WINDOW`]), the packets since the last video keyframe (the GOP cache), so
//! nothing is lost to the race between a stream starting and the packager and analysis decoder
//! that follow every stream subscribing. Later the GOP is not kept (it is most of a stream's
//! memory: ~1.1 MB at 4.5 Mbit/s and a 2 s GOP); a subscriber that joins then starts at the next
//! keyframe.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use thiserror::Error;
use tokio::sync::{Notify, broadcast, mpsc};

use crate::packet::{MediaKind, MediaPacket, StreamId, StreamInfo};

/// Longest GOP the cache keeps, in packets and in bytes: a publisher that sends no keyframes (or
/// huge ones) cannot grow it past either. Packets share their payload with the subscribers' queues
/// (`Bytes`), so the cache costs no copy. A GOP over the limit is not cached at all: a subscriber
/// that arrives during it starts at the next keyframe rather than from half a GOP.
const GOP_CACHE_PACKETS: usize = 2_000;
const GOP_CACHE_BYTES: usize = 16 << 20;

/// How long after a stream starts its GOP is cached: the followers of every stream subscribe
/// when they hear that it started, within milliseconds unless the host is badly overloaded.
pub const GOP_CACHE_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Error, PartialEq)]
pub enum PublishError {
    #[error("stream {0} already has a publisher")]
    AlreadyPublishing(StreamId),
}

/// What a subscription does when its queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    Backpressure,
    DropOldest,
}

/// Lifecycle announcements, for packagers and bookkeeping that follow every stream.
#[derive(Debug, Clone)]
pub enum HubEvent {
    Started {
        stream: StreamId,
        /// Who the stream belongs to, as the publish grant said (opaque to the hub).
        owner: String,
    },
    InfoChanged {
        stream: StreamId,
        info: StreamInfo,
    },
    Ended {
        stream: StreamId,
        owner: String,
        stats: PublishStats,
    },
}

/// Counters for one publish session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PublishStats {
    pub video_packets: u64,
    pub audio_packets: u64,
    pub bytes: u64,
    /// Packets dropped by `DropOldest` subscribers (summed over subscribers).
    pub dropped: u64,
}

/// All live streams of this host.
#[derive(Clone)]
pub struct StreamHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    channels: Mutex<HashMap<StreamId, Arc<Channel>>>,
    events: broadcast::Sender<HubEvent>,
    /// How long after a stream's start its GOP is cached ([`GOP_CACHE_WINDOW`]).
    gop_window: std::time::Duration,
}

impl Default for StreamHub {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamHub {
    pub fn new() -> Self {
        Self::with_gop_window(GOP_CACHE_WINDOW)
    }

    /// A hub that caches each stream's GOP for `window` after the stream starts.
    pub fn with_gop_window(window: std::time::Duration) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(HubInner {
                channels: Mutex::new(HashMap::new()),
                events,
                gop_window: window,
            }),
        }
    }

    /// Claims `stream` for a publisher; `owner` (whom the stream belongs to, e.g. its tenant)
    /// goes with its start and end events, so followers need not look it up. A second publisher
    /// on the same stream is refused.
    pub fn publish(&self, stream: &str, owner: &str) -> Result<Publisher, PublishError> {
        let mut channels = lock(&self.inner.channels);
        if channels.contains_key(stream) {
            return Err(PublishError::AlreadyPublishing(stream.to_string()));
        }
        let channel = Arc::new(Channel::default());
        lock(&channel.state).gop_until = std::time::Instant::now() + self.inner.gop_window;
        channels.insert(stream.to_string(), channel.clone());
        drop(channels);
        let _ = self.inner.events.send(HubEvent::Started {
            stream: stream.to_string(),
            owner: owner.to_string(),
        });
        Ok(Publisher {
            hub: self.clone(),
            stream: stream.to_string(),
            owner: owner.to_string(),
            channel,
            stats: PublishStats::default(),
        })
    }

    /// Follows stream starts, codec changes and ends.
    pub fn events(&self) -> broadcast::Receiver<HubEvent> {
        self.inner.events.subscribe()
    }

    /// Subscribes to a live stream; `None` when nobody is publishing it.
    pub fn subscribe(
        &self,
        stream: &str,
        overflow: Overflow,
        capacity: usize,
    ) -> Option<Subscription> {
        let channel = lock(&self.inner.channels).get(stream).cloned()?;
        Some(channel.subscribe(overflow, capacity.max(1)))
    }

    pub fn is_live(&self, stream: &str) -> bool {
        lock(&self.inner.channels).contains_key(stream)
    }

    pub fn info(&self, stream: &str) -> Option<StreamInfo> {
        let channel = lock(&self.inner.channels).get(stream).cloned()?;
        Some(lock(&channel.state).info.clone())
    }

    pub fn live_streams(&self) -> Vec<StreamId> {
        lock(&self.inner.channels).keys().cloned().collect()
    }

    /// The hub's gauge for `/metrics`: `media_analyzer_live_streams`.
    pub fn collector(&self) -> Box<dyn prometheus_client::collector::Collector> {
        Box::new(LiveStreams(self.clone()))
    }
}

/// The streams live in a hub, for `/metrics`.
struct LiveStreams(StreamHub);

impl std::fmt::Debug for LiveStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveStreams")
    }
}

impl prometheus_client::collector::Collector for LiveStreams {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> std::fmt::Result {
        use prometheus_client::encoding::EncodeMetric;
        let live = prometheus_client::metrics::gauge::ConstGauge::new(
            lock(&self.0.inner.channels).len() as i64,
        );
        live.encode(encoder.encode_descriptor(
            "media_analyzer_live_streams",
            "streams being published to this host",
            None,
            live.metric_type(),
        )?)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short locks cannot leave the data half-updated in a
    // way that matters more than stopping the whole hub would, so keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct Channel {
    state: Mutex<ChannelState>,
    dropped: Arc<AtomicU64>,
}

struct ChannelState {
    info: StreamInfo,
    config: Vec<MediaPacket>,
    gop: Vec<MediaPacket>,
    gop_bytes: usize,
    /// The current GOP outgrew the cache; nothing more is cached until the next keyframe.
    gop_overflowed: bool,
    /// When the stream's GOP stops being cached (its start window ends).
    gop_until: std::time::Instant,
    /// Copy-on-write: `send` takes a cheap clone of the Arc instead of the list.
    subscribers: Arc<[Sink]>,
}

impl Default for ChannelState {
    fn default() -> Self {
        Self {
            info: StreamInfo::default(),
            config: Vec::new(),
            gop: Vec::new(),
            gop_bytes: 0,
            gop_overflowed: false,
            gop_until: std::time::Instant::now(),
            subscribers: Arc::from(Vec::new()),
        }
    }
}

#[derive(Clone)]
enum Sink {
    Backpressure(mpsc::Sender<MediaPacket>),
    DropOldest(Arc<Ring>),
}

impl Channel {
    fn subscribe(&self, overflow: Overflow, capacity: usize) -> Subscription {
        let mut state = lock(&self.state);
        let primer: Vec<MediaPacket> = state
            .config
            .iter()
            .chain(state.gop.iter())
            .cloned()
            .collect();
        let (sink, source) = match overflow {
            Overflow::Backpressure => {
                // Room for the primer on top of the requested capacity, so priming never blocks.
                let (tx, rx) = mpsc::channel(capacity + primer.len());
                for p in primer {
                    let _ = tx.try_send(p);
                }
                (Sink::Backpressure(tx), Source::Queue(rx))
            }
            Overflow::DropOldest => {
                let ring = Arc::new(Ring::new(capacity, self.dropped.clone()));
                // Primed directly: `push` refuses packets while nobody else holds the ring (a
                // reader that left), and here the subscription does not hold it yet.
                ring.prime(primer);
                (Sink::DropOldest(ring.clone()), Source::Ring(ring))
            }
        };
        let mut sinks = state.subscribers.to_vec();
        sinks.push(sink);
        state.subscribers = sinks.into();
        Subscription {
            info: state.info.clone(),
            source,
        }
    }
}

/// The publishing side of one stream. Dropping it ends the stream for every subscriber.
pub struct Publisher {
    hub: StreamHub,
    stream: StreamId,
    owner: String,
    channel: Arc<Channel>,
    stats: PublishStats,
}

impl Publisher {
    pub fn stream(&self) -> &str {
        &self.stream
    }

    pub fn stats(&self) -> PublishStats {
        PublishStats {
            dropped: self.channel.dropped.load(Ordering::Relaxed),
            ..self.stats.clone()
        }
    }

    /// Records new codec information and tells followers.
    pub fn set_info(&mut self, info: StreamInfo) {
        lock(&self.channel.state).info = info.clone();
        let _ = self.hub.inner.events.send(HubEvent::InfoChanged {
            stream: self.stream.clone(),
            info,
        });
    }

    pub fn info(&self) -> StreamInfo {
        lock(&self.channel.state).info.clone()
    }

    /// Delivers one packet to every subscriber according to its overflow policy.
    pub async fn send(&mut self, packet: MediaPacket) {
        match packet.kind {
            MediaKind::Video => self.stats.video_packets += 1,
            MediaKind::Audio => self.stats.audio_packets += 1,
        }
        self.stats.bytes += packet.data.len() as u64;
        let sinks = {
            let mut state = lock(&self.channel.state);
            if packet.is_config {
                state.config.retain(|p| p.kind != packet.kind);
                state.config.push(packet.clone());
            } else if packet.is_video_keyframe() && std::time::Instant::now() >= state.gop_until {
                // The start window is over: from this keyframe on nothing is cached.
                state.gop = Vec::new();
                state.gop_bytes = 0;
                state.gop_overflowed = true;
            } else {
                if packet.is_video_keyframe() {
                    state.gop.clear();
                    state.gop_bytes = 0;
                    state.gop_overflowed = false;
                }
                if !state.gop_overflowed {
                    if state.gop.len() < GOP_CACHE_PACKETS
                        && state.gop_bytes + packet.data.len() <= GOP_CACHE_BYTES
                    {
                        state.gop_bytes += packet.data.len();
                        state.gop.push(packet.clone());
                    } else {
                        state.gop = Vec::new();
                        state.gop_bytes = 0;
                        state.gop_overflowed = true;
                    }
                }
            }
            state.subscribers.clone()
        };
        let mut closed = false;
        for sink in sinks.iter() {
            match sink {
                Sink::Backpressure(tx) => closed |= tx.send(packet.clone()).await.is_err(),
                Sink::DropOldest(ring) => closed |= !ring.push(packet.clone()),
            }
        }
        if closed {
            let mut state = lock(&self.channel.state);
            let live: Vec<Sink> = state
                .subscribers
                .iter()
                .filter(|s| match s {
                    Sink::Backpressure(tx) => !tx.is_closed(),
                    Sink::DropOldest(ring) => Arc::strong_count(ring) > 1,
                })
                .cloned()
                .collect();
            state.subscribers = live.into();
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let sinks = std::mem::replace(
            &mut lock(&self.channel.state).subscribers,
            Arc::from(Vec::new()),
        );
        for sink in sinks.iter() {
            if let Sink::DropOldest(ring) = sink {
                ring.close();
            }
        }
        lock(&self.hub.inner.channels).remove(&self.stream);
        let _ = self.hub.inner.events.send(HubEvent::Ended {
            stream: self.stream.clone(),
            owner: std::mem::take(&mut self.owner),
            stats: self.stats(),
        });
    }
}

/// The receiving side of a subscription. `recv` returns `None` once the publisher is gone
/// and everything queued has been read.
pub struct Subscription {
    /// Codec information at the time of subscribing.
    pub info: StreamInfo,
    source: Source,
}

enum Source {
    Queue(mpsc::Receiver<MediaPacket>),
    Ring(Arc<Ring>),
}

impl Subscription {
    /// Packets this subscription lost to `DropOldest` since the last call (a decoder must
    /// resynchronise at the next keyframe when this is not zero).
    pub fn take_dropped(&self) -> u64 {
        match &self.source {
            Source::Queue(_) => 0,
            Source::Ring(ring) => ring.unreported.swap(0, Ordering::Relaxed),
        }
    }

    pub async fn recv(&mut self) -> Option<MediaPacket> {
        match &mut self.source {
            Source::Queue(rx) => rx.recv().await,
            Source::Ring(ring) => ring.pop().await,
        }
    }
}

/// A bounded queue that drops its oldest entry when full.
struct Ring {
    queue: Mutex<RingState>,
    notify: Notify,
    capacity: usize,
    /// Shared by the stream's rings: the publisher's total.
    dropped: Arc<AtomicU64>,
    /// This ring's drops not yet reported to its reader.
    unreported: AtomicU64,
}

struct RingState {
    items: VecDeque<MediaPacket>,
    closed: bool,
}

impl Ring {
    fn new(capacity: usize, dropped: Arc<AtomicU64>) -> Self {
        Self {
            queue: Mutex::new(RingState {
                items: VecDeque::with_capacity(capacity),
                closed: false,
            }),
            notify: Notify::new(),
            capacity,
            dropped,
            unreported: AtomicU64::new(0),
        }
    }

    /// Returns false when the reader is gone.
    fn push(self: &Arc<Self>, packet: MediaPacket) -> bool {
        if Arc::strong_count(self) == 1 {
            return false;
        }
        let mut q = lock(&self.queue);
        if q.items.len() == self.capacity {
            q.items.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.unreported.fetch_add(1, Ordering::Relaxed);
        }
        q.items.push_back(packet);
        drop(q);
        self.notify.notify_one();
        true
    }

    /// Fills a new ring with a late subscriber's start (configuration, then the cached GOP),
    /// keeping the newest `capacity` packets.
    fn prime(&self, primer: Vec<MediaPacket>) {
        let mut q = lock(&self.queue);
        for packet in primer {
            if q.items.len() == self.capacity {
                q.items.pop_front();
            }
            q.items.push_back(packet);
        }
    }

    fn close(&self) {
        lock(&self.queue).closed = true;
        self.notify.notify_one();
    }

    async fn pop(&self) -> Option<MediaPacket> {
        loop {
            {
                let mut q = lock(&self.queue);
                if let Some(p) = q.items.pop_front() {
                    return Some(p);
                }
                if q.closed {
                    return None;
                }
            }
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn video(dts: i64, key: bool) -> MediaPacket {
        MediaPacket {
            kind: MediaKind::Video,
            dts_ms: dts,
            pts_ms: dts,
            keyframe: key,
            is_config: false,
            data: Bytes::from_static(b"frame"),
        }
    }

    /// A video sequence header.
    fn video_config() -> MediaPacket {
        MediaPacket {
            is_config: true,
            ..video(0, false)
        }
    }

    /// Everything a subscription delivers until its stream ends.
    async fn drain(sub: &mut Subscription) -> Vec<MediaPacket> {
        let mut packets = Vec::new();
        while let Some(p) = sub.recv().await {
            packets.push(p);
        }
        packets
    }

    #[tokio::test]
    async fn second_publisher_is_refused() {
        let hub = StreamHub::new();
        let _first = hub.publish("s1", "tenant").unwrap();
        assert_eq!(
            hub.publish("s1", "tenant").err(),
            Some(PublishError::AlreadyPublishing("s1".into()))
        );
        assert!(hub.publish("s2", "tenant").is_ok());
    }

    #[tokio::test]
    async fn late_subscriber_gets_gop_then_live_packets_then_end() {
        let hub = StreamHub::new();
        let mut publisher = hub.publish("s", "tenant").unwrap();
        publisher.send(video(0, true)).await;
        publisher.send(video(33, false)).await;
        publisher.send(video(66, true)).await;
        publisher.send(video(100, false)).await;
        let mut sub = hub.subscribe("s", Overflow::Backpressure, 8).unwrap();
        publisher.send(video(133, false)).await;
        drop(publisher);
        let seen: Vec<_> = drain(&mut sub).await.iter().map(|p| p.dts_ms).collect();
        assert_eq!(seen, vec![66, 100, 133]);
        assert!(!hub.is_live("s"));
    }

    /// The analysis decoder subscribes with `DropOldest` when it hears that a stream started; on a
    /// busy host the publisher's sequence header may already have gone by. It must still come
    /// first (a decoder without it decodes nothing: one stream in a few got no analysis at all).
    #[tokio::test]
    async fn late_drop_oldest_subscriber_gets_the_configuration_and_the_gop() {
        let hub = StreamHub::new();
        let mut publisher = hub.publish("s", "tenant").unwrap();
        publisher.send(video_config()).await;
        publisher.send(video(0, true)).await;
        publisher.send(video(33, false)).await;
        let mut sub = hub.subscribe("s", Overflow::DropOldest, 8).unwrap();
        publisher.send(video(66, false)).await;
        drop(publisher);
        let seen: Vec<_> = drain(&mut sub)
            .await
            .iter()
            .map(|p| (p.dts_ms, p.is_config, p.keyframe))
            .collect();
        assert_eq!(
            seen,
            vec![
                (0, true, false),
                (0, false, true),
                (33, false, false),
                (66, false, false)
            ]
        );
        assert_eq!(sub.take_dropped(), 0);
    }

    /// After the start window the GOP is not kept: a subscriber that joins then gets the
    /// configuration and starts at the next keyframe.
    #[tokio::test]
    async fn after_the_start_window_the_gop_is_not_cached() {
        let hub = StreamHub::with_gop_window(std::time::Duration::ZERO);
        let mut publisher = hub.publish("s", "tenant").unwrap();
        publisher.send(video_config()).await;
        publisher.send(video(0, true)).await;
        publisher.send(video(33, false)).await;
        assert!(lock(&publisher.channel.state).gop.is_empty());
        let mut sub = hub.subscribe("s", Overflow::DropOldest, 8).unwrap();
        publisher.send(video(66, false)).await;
        publisher.send(video(100, true)).await;
        drop(publisher);
        let seen: Vec<_> = drain(&mut sub)
            .await
            .iter()
            .map(|p| (p.dts_ms, p.is_config))
            .collect();
        // The decoder waits for the keyframe at 100 on its own; the hub delivers what is live.
        assert_eq!(seen, vec![(0, true), (66, false), (100, false)]);
    }

    #[tokio::test]
    async fn the_gop_cache_is_bounded_in_bytes_and_skips_an_oversized_gop() {
        let hub = StreamHub::new();
        let mut publisher = hub.publish("s", "tenant").unwrap();
        let big = |dts, key| MediaPacket {
            data: Bytes::from(vec![0u8; 1 << 20]),
            ..video(dts, key)
        };
        // 40 MiB without a keyframe: more than the cache holds.
        for i in 0..40 {
            publisher.send(big(i, i == 0)).await;
        }
        {
            let state = lock(&publisher.channel.state);
            assert!(state.gop_bytes <= GOP_CACHE_BYTES);
            assert!(state.gop.is_empty(), "half a GOP is not cached");
        }
        // A subscriber now gets nothing cached, then live packets; the next keyframe caches again.
        let mut sub = hub.subscribe("s", Overflow::DropOldest, 64).unwrap();
        publisher.send(video(100, true)).await;
        publisher.send(video(133, false)).await;
        assert_eq!(sub.recv().await.unwrap().dts_ms, 100);
        assert_eq!(lock(&publisher.channel.state).gop.len(), 2);
    }

    #[tokio::test]
    async fn drop_oldest_counts_what_it_drops() {
        let hub = StreamHub::new();
        let mut publisher = hub.publish("s", "tenant").unwrap();
        let mut sub = hub.subscribe("s", Overflow::DropOldest, 2).unwrap();
        for i in 0..5 {
            publisher.send(video(i, i == 0)).await;
        }
        assert_eq!(publisher.stats().dropped, 3);
        assert_eq!(sub.take_dropped(), 3);
        assert_eq!(sub.take_dropped(), 0);
        assert_eq!(sub.recv().await.unwrap().dts_ms, 3);
        assert_eq!(sub.recv().await.unwrap().dts_ms, 4);
        drop(publisher);
        assert!(sub.recv().await.is_none());
    }

    #[tokio::test]
    async fn events_announce_start_and_end() {
        let hub = StreamHub::new();
        let mut events = hub.events();
        let publisher = hub.publish("s", "tenant").unwrap();
        drop(publisher);
        assert!(matches!(
            events.recv().await.unwrap(),
            HubEvent::Started { .. }
        ));
        assert!(matches!(
            events.recv().await.unwrap(),
            HubEvent::Ended { .. }
        ));
    }

    #[tokio::test]
    async fn dropped_subscriber_does_not_block_publisher() {
        let hub = StreamHub::new();
        let mut publisher = hub.publish("s", "tenant").unwrap();
        let sub = hub.subscribe("s", Overflow::Backpressure, 1).unwrap();
        drop(sub);
        for i in 0..10 {
            publisher.send(video(i, false)).await;
        }
        assert_eq!(publisher.stats().video_packets, 10);
    }
}
