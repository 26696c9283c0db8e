//! Media types shared by every part of the host: stream identity, media packets with their
//! timestamps, codec configuration (H.264 and AAC), and the per-stream [`hub`] that ingest
//! publishes to and that HLS (and later the decoder) subscribe to.
//!
//! This crate knows nothing about RTMP, HLS or tenants.

pub mod aac;
pub mod avc;
#[doc(hidden)]
pub mod fixtures;
pub mod hub;
pub mod packet;

pub use hub::{HubEvent, Overflow, PublishError, Publisher, StreamHub, Subscription};
pub use packet::{AudioInfo, MediaKind, MediaPacket, StreamId, StreamInfo, VideoInfo};

/// Wall-clock Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
