//! FLV audio and video tag bodies (as carried in RTMP messages 8 and 9) → media packets.

use bytes::Bytes;
use media::aac::{AacConfig, AacError};
use media::avc::{AvcConfig, AvcError};
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum FlvError {
    #[error("empty {0} tag")]
    Empty(&'static str),
    #[error("truncated {0} tag")]
    Truncated(&'static str),
    #[error(
        "unsupported video codec {0}: this server ingests H.264/AVC only (set the encoder to x264/H.264)"
    )]
    UnsupportedVideo(String),
    #[error("unsupported audio codec {0}: this server ingests AAC only")]
    UnsupportedAudio(String),
    #[error("bad H.264 configuration: {0}")]
    Avc(#[from] AvcError),
    #[error("bad AAC configuration: {0}")]
    Aac(#[from] AacError),
}

/// What one FLV tag body carries.
#[derive(Debug, PartialEq)]
pub enum FlvTag {
    VideoConfig {
        config: AvcConfig,
        raw: Bytes,
    },
    Video {
        keyframe: bool,
        cts_ms: i32,
        data: Bytes,
    },
    AudioConfig {
        config: AacConfig,
        raw: Bytes,
    },
    Audio {
        data: Bytes,
    },
    /// End of sequence, or a packet that carries nothing to package (e.g. video info frames).
    Nothing,
}

pub fn parse_video(body: &Bytes) -> Result<FlvTag, FlvError> {
    let first = *body.first().ok_or(FlvError::Empty("video"))?;
    if first & 0x80 != 0 {
        // Enhanced RTMP: the low nibble is a packet type and a FourCC follows.
        let fourcc = body
            .get(1..5)
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .unwrap_or_else(|| "?".into());
        let name = match fourcc.as_str() {
            "hvc1" => "HEVC (enhanced RTMP hvc1)".to_string(),
            "av01" => "AV1 (enhanced RTMP av01)".to_string(),
            "vp09" => "VP9 (enhanced RTMP vp09)".to_string(),
            other => format!("enhanced RTMP {other:?}"),
        };
        return Err(FlvError::UnsupportedVideo(name));
    }
    let frame_type = first >> 4;
    let codec_id = first & 0x0f;
    if codec_id != 7 {
        let name = match codec_id {
            2 => "Sorenson H.263",
            4 | 5 => "VP6",
            12 => "HEVC (legacy FLV id 12)",
            _ => "unknown",
        };
        return Err(FlvError::UnsupportedVideo(format!(
            "{name} (FLV codec id {codec_id})"
        )));
    }
    if frame_type == 5 {
        return Ok(FlvTag::Nothing); // video info/command frame
    }
    if body.len() < 5 {
        return Err(FlvError::Truncated("video"));
    }
    let packet_type = body[1];
    // Composition time is a signed 24-bit integer.
    let cts = (((body[2] as i32) << 24) | ((body[3] as i32) << 16) | ((body[4] as i32) << 8)) >> 8;
    let payload = body.slice(5..);
    match packet_type {
        0 => Ok(FlvTag::VideoConfig {
            config: AvcConfig::parse(&payload)?,
            raw: payload,
        }),
        1 if payload.is_empty() => Ok(FlvTag::Nothing),
        1 => Ok(FlvTag::Video {
            keyframe: frame_type == 1,
            cts_ms: cts,
            data: payload,
        }),
        _ => Ok(FlvTag::Nothing),
    }
}

pub fn parse_audio(body: &Bytes) -> Result<FlvTag, FlvError> {
    let first = *body.first().ok_or(FlvError::Empty("audio"))?;
    let format = first >> 4;
    if format != 10 {
        let name = match format {
            2 => "MP3",
            9 => "enhanced RTMP audio (Opus/FLAC/AC-3)",
            11 => "Speex",
            0 | 3 => "PCM",
            4..=6 => "Nellymoser",
            7 | 8 => "G.711",
            _ => "unknown",
        };
        return Err(FlvError::UnsupportedAudio(format!(
            "{name} (FLV sound format {format})"
        )));
    }
    if body.len() < 2 {
        return Err(FlvError::Truncated("audio"));
    }
    let payload = body.slice(2..);
    match body[1] {
        0 => Ok(FlvTag::AudioConfig {
            config: AacConfig::parse(&payload)?,
            raw: payload,
        }),
        _ if payload.is_empty() => Ok(FlvTag::Nothing),
        _ => Ok(FlvTag::Audio { data: payload }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_hevc_over_enhanced_rtmp_by_name() {
        let body = Bytes::from_static(&[0x90, b'h', b'v', b'c', b'1', 0, 0]);
        let err = parse_video(&body).unwrap_err();
        assert!(err.to_string().contains("HEVC"), "{err}");
    }

    #[test]
    fn reads_negative_composition_time() {
        let body = Bytes::from_static(&[0x27, 1, 0xff, 0xff, 0xfe, 0, 0, 0, 1, 0x41]);
        assert_eq!(
            parse_video(&body).unwrap(),
            FlvTag::Video {
                keyframe: false,
                cts_ms: -2,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x41])
            }
        );
    }

    #[test]
    fn aac_config_and_frames() {
        let cfg = parse_audio(&Bytes::from_static(&[0xaf, 0, 0x12, 0x10])).unwrap();
        assert!(matches!(cfg, FlvTag::AudioConfig { config, .. } if config.sample_rate == 44100));
        let frame = parse_audio(&Bytes::from_static(&[0xaf, 1, 0x21, 0x00])).unwrap();
        assert_eq!(
            frame,
            FlvTag::Audio {
                data: Bytes::from_static(&[0x21, 0])
            }
        );
        assert!(parse_audio(&Bytes::from_static(&[0x2f, 1])).is_err());
        assert_eq!(parse_audio(&Bytes::new()), Err(FlvError::Empty("audio")));
    }
}
