//! The HLS segmenter (sans-IO) on arbitrary packet sequences: configuration packets, keyframes,
//! timestamps that jump, go backwards or overflow, and frames that are not valid AVCC.
//!
//! Framing of the input: per packet a 12-byte header — kind/flags (1), dts delta (i32 LE),
//! composition offset (i16 LE), payload length (u16 LE, capped by what is left), 3 spare — then
//! the payload.
#![no_main]

use bytes::Bytes;
use hls::Segmenter;
use libfuzzer_sys::fuzz_target;
use media::{MediaKind, MediaPacket};

fuzz_target!(|data: &[u8]| {
    let mut segmenter = Segmenter::new(0, 1000, false);
    let mut rest = data;
    let mut dts: i64 = 0;
    let mut total = 0u64;
    while rest.len() >= 12 {
        let (h, tail) = rest.split_at(12);
        let flags = h[0];
        // As the RTMP session produces them: 32-bit timestamps unwrapped, so never near i64's ends.
        dts = (dts + i32::from_le_bytes([h[1], h[2], h[3], h[4]]) as i64).clamp(-(1 << 40), 1 << 40);
        let cts = i16::from_le_bytes([h[5], h[6]]) as i64;
        let len = (u16::from_le_bytes([h[7], h[8]]) as usize).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        let packet = MediaPacket {
            kind: if flags & 1 == 0 { MediaKind::Video } else { MediaKind::Audio },
            dts_ms: dts,
            pts_ms: dts + cts,
            keyframe: flags & 2 != 0,
            is_config: flags & 4 != 0,
            data: Bytes::copy_from_slice(payload),
        };
        if let Ok(Some(done)) = segmenter.push(&packet, 1_700_000_000_000) {
            total += done.segment.bytes;
        }
        if let Some((_, bytes)) = segmenter.drain(4096) {
            total += bytes.len() as u64;
        }
    }
    let _ = segmenter.finish();
    let _ = total;
});
