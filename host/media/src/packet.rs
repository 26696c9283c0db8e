//! Media packets as they travel from ingest to the packagers.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The stable identifier of a stream (a channel that a publisher pushes to), e.g. `str_3f9a…`.
pub type StreamId = String;

/// Which elementary stream a packet belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Video,
    Audio,
}

/// One access unit (a video frame or an audio frame) without container framing.
///
/// Video payloads are H.264 in AVCC form (length-prefixed NAL units, as carried in FLV/MP4);
/// audio payloads are raw AAC frames. Codec configuration travels separately in
/// [`StreamInfo`] and in packets with `is_config` set.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPacket {
    pub kind: MediaKind,
    /// Decode timestamp in milliseconds since the start of the publish session.
    pub dts_ms: i64,
    /// Presentation timestamp in milliseconds (dts + composition offset).
    pub pts_ms: i64,
    /// A video keyframe (IDR); always true for audio.
    pub keyframe: bool,
    /// Codec configuration (AVCDecoderConfigurationRecord / AudioSpecificConfig), not a frame.
    pub is_config: bool,
    pub data: Bytes,
}

impl MediaPacket {
    pub fn is_video_keyframe(&self) -> bool {
        self.kind == MediaKind::Video && self.keyframe && !self.is_config
    }
}

/// Video properties of a stream, as far as they are known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoInfo {
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// Frames per second announced by the publisher (0 when unknown).
    pub fps: f64,
}

/// Audio properties of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioInfo {
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u32,
}

/// What is known about a live stream's codecs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamInfo {
    pub video: Option<VideoInfo>,
    pub audio: Option<AudioInfo>,
    /// The parsed AVC decoder configuration, needed to turn AVCC frames into Annex B.
    pub avc: Option<crate::avc::AvcConfig>,
    /// The parsed AAC AudioSpecificConfig, needed to write ADTS headers.
    pub aac: Option<crate::aac::AacConfig>,
}
