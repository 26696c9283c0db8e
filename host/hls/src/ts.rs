//! A minimal MPEG-TS muxer for HLS: one program, H.264 on PID 0x100 and AAC (ADTS) on 0x101.
//! No re-encoding: AVCC frames become Annex B, raw AAC frames get ADTS headers.

use media::aac::AacConfig;
use media::avc::{AvcConfig, AvcError};

const PACKET: usize = 188;
const PID_PAT: u16 = 0x0000;
const PID_PMT: u16 = 0x1000;
pub const PID_VIDEO: u16 = 0x0100;
pub const PID_AUDIO: u16 = 0x0101;
/// Timestamps are offset so that B-frame reordering never makes them negative.
const TS_OFFSET_90K: i64 = 126_000;
/// The same offset in milliseconds: a segment's PTS minus this is the stream's media time.
pub const TS_OFFSET_MS: i64 = TS_OFFSET_90K / 90;
/// PCR runs this far ahead of the decode time of the frame it travels with.
const PCR_LEAD_90K: i64 = 63_000;

/// Writes TS packets for one stream; continuity counters persist across segments.
#[derive(Debug, Clone)]
pub struct TsMuxer {
    has_video: bool,
    has_audio: bool,
    cc: [u8; 4],
    pes: Vec<u8>,
}

impl TsMuxer {
    pub fn new(has_video: bool, has_audio: bool) -> Self {
        Self {
            has_video,
            has_audio,
            cc: [0; 4],
            pes: Vec::with_capacity(64 * 1024),
        }
    }

    /// Which elementary streams the next tables announce (codec configuration can arrive late).
    pub fn set_streams(&mut self, has_video: bool, has_audio: bool) {
        self.has_video = has_video;
        self.has_audio = has_audio;
    }

    fn pcr_pid(&self) -> u16 {
        if self.has_video { PID_VIDEO } else { PID_AUDIO }
    }

    /// PAT and PMT; every segment starts with them so it can be decoded on its own.
    pub fn write_tables(&mut self, out: &mut Vec<u8>) {
        let pat = [
            0x00, // table_id
            0xb0,
            0x0d, // section_syntax_indicator, length 13
            0x00,
            0x01, // transport_stream_id
            0xc1,
            0x00,
            0x00, // version 0, current, section 0/0
            0x00,
            0x01, // program 1
            0xe0 | (PID_PMT >> 8) as u8,
            PID_PMT as u8,
        ];
        self.write_section(PID_PAT, &pat, out);
        let mut pmt = vec![
            0x02,
            0xb0,
            0x00, // length patched below
            0x00,
            0x01,
            0xc1,
            0x00,
            0x00,
            0xe0 | (self.pcr_pid() >> 8) as u8,
            self.pcr_pid() as u8,
            0xf0,
            0x00, // program_info_length 0
        ];
        if self.has_video {
            pmt.extend_from_slice(&[
                0x1b,
                0xe0 | (PID_VIDEO >> 8) as u8,
                PID_VIDEO as u8,
                0xf0,
                0x00,
            ]);
        }
        if self.has_audio {
            pmt.extend_from_slice(&[
                0x0f,
                0xe0 | (PID_AUDIO >> 8) as u8,
                PID_AUDIO as u8,
                0xf0,
                0x00,
            ]);
        }
        let section_length = pmt.len() - 3 + 4; // after the length field, plus CRC
        pmt[1] = 0xb0 | ((section_length >> 8) as u8 & 0x0f);
        pmt[2] = section_length as u8;
        self.write_section(PID_PMT, &pmt, out);
    }

    fn write_section(&mut self, pid: u16, section: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[
            0x47,
            0x40 | (pid >> 8) as u8,
            pid as u8,
            0x10 | self.next_cc(pid),
        ]);
        out.push(0x00); // pointer_field
        out.extend_from_slice(section);
        out.extend_from_slice(&crc32_mpeg(section).to_be_bytes());
        out.resize(start + PACKET, 0xff);
    }

    /// Writes one H.264 access unit.
    pub fn write_video(
        &mut self,
        avc: &AvcConfig,
        frame: &[u8],
        keyframe: bool,
        dts_ms: i64,
        pts_ms: i64,
        out: &mut Vec<u8>,
    ) -> Result<(), AvcError> {
        let (dts, pts) = (to_90k(dts_ms), to_90k(pts_ms));
        self.pes.clear();
        write_pes_header(&mut self.pes, 0xe0, pts, (dts != pts).then_some(dts), 0);
        // Annex B straight into the reused PES buffer: one copy of the frame, no allocation.
        avc.write_annex_b(frame, keyframe, &mut self.pes)?;
        let pes = std::mem::take(&mut self.pes);
        self.write_pes_packets(PID_VIDEO, &pes, keyframe, Some(dts - PCR_LEAD_90K), out);
        self.pes = pes;
        Ok(())
    }

    /// Writes one H.264 access unit that is already Annex B (an encoder's output, with SPS/PPS
    /// in front of its keyframes), led by an access unit delimiter of ours.
    pub fn write_video_annex_b(
        &mut self,
        access_unit: &[u8],
        keyframe: bool,
        dts_ms: i64,
        pts_ms: i64,
        out: &mut Vec<u8>,
    ) {
        const START: [u8; 4] = [0, 0, 0, 1];
        let (dts, pts) = (to_90k(dts_ms), to_90k(pts_ms));
        self.pes.clear();
        write_pes_header(&mut self.pes, 0xe0, pts, (dts != pts).then_some(dts), 0);
        self.pes.extend_from_slice(&START);
        self.pes.extend_from_slice(&[0x09, 0xf0]);
        for nal in media::avc::annex_b_units(access_unit) {
            if nal.first().map(|b| b & 0x1f) == Some(9) {
                continue;
            }
            self.pes.extend_from_slice(&START);
            self.pes.extend_from_slice(nal);
        }
        let pes = std::mem::take(&mut self.pes);
        self.write_pes_packets(PID_VIDEO, &pes, keyframe, Some(dts - PCR_LEAD_90K), out);
        self.pes = pes;
    }

    /// Writes one raw AAC frame with its ADTS header.
    pub fn write_audio(&mut self, aac: &AacConfig, frame: &[u8], pts_ms: i64, out: &mut Vec<u8>) {
        let pts = to_90k(pts_ms);
        self.pes.clear();
        let payload_len = 7 + frame.len();
        write_pes_header(&mut self.pes, 0xc0, pts, None, payload_len);
        self.pes.extend_from_slice(&aac.adts_header(frame.len()));
        self.pes.extend_from_slice(frame);
        let pcr = (!self.has_video).then_some(pts - PCR_LEAD_90K);
        let pes = std::mem::take(&mut self.pes);
        self.write_pes_packets(PID_AUDIO, &pes, !self.has_video, pcr, out);
        self.pes = pes;
    }

    fn write_pes_packets(
        &mut self,
        pid: u16,
        pes: &[u8],
        random_access: bool,
        pcr: Option<i64>,
        out: &mut Vec<u8>,
    ) {
        let mut rest = pes;
        let mut first = true;
        let pcr = if pid == self.pcr_pid() { pcr } else { None };
        while !rest.is_empty() {
            let start = out.len();
            let pusi = if first { 0x40 } else { 0x00 };
            out.extend_from_slice(&[0x47, pusi | (pid >> 8) as u8, pid as u8, 0]);
            let cc = self.next_cc(pid);
            // Adaptation field: random access + PCR on the first packet, stuffing on the last.
            let mut adaptation = Vec::new();
            if first && (random_access || pcr.is_some()) {
                let mut flags = 0u8;
                if random_access {
                    flags |= 0x40;
                }
                adaptation.push(flags);
                if let Some(pcr) = pcr {
                    adaptation[0] |= 0x10;
                    let base = pcr.max(0) as u64 & 0x1_ffff_ffff;
                    adaptation.extend_from_slice(&[
                        (base >> 25) as u8,
                        (base >> 17) as u8,
                        (base >> 9) as u8,
                        (base >> 1) as u8,
                        ((base & 1) << 7) as u8 | 0x7e,
                        0x00,
                    ]);
                }
            }
            let room = PACKET
                - 4
                - if adaptation.is_empty() {
                    0
                } else {
                    1 + adaptation.len()
                };
            if rest.len() < room {
                // Stuff the adaptation field so the payload ends exactly at the packet end.
                let stuffing = room - rest.len();
                if adaptation.is_empty() {
                    // An empty adaptation field takes one byte (its length), a flagged one two.
                    if stuffing == 1 {
                        out.push(0x00);
                        out[start + 3] = 0x30 | cc;
                        out.extend_from_slice(rest);
                        rest = &[];
                        first = false;
                        debug_assert_eq!(out.len() - start, PACKET);
                        continue;
                    }
                    adaptation.push(0x00);
                    adaptation.resize(stuffing - 1, 0xff);
                } else {
                    adaptation.resize(adaptation.len() + stuffing, 0xff);
                }
            }
            if adaptation.is_empty() {
                out[start + 3] = 0x10 | cc;
            } else {
                out[start + 3] = 0x30 | cc;
                out.push(adaptation.len() as u8);
                out.extend_from_slice(&adaptation);
            }
            let take = (PACKET - (out.len() - start)).min(rest.len());
            out.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            first = false;
            debug_assert_eq!(out.len() - start, PACKET);
        }
    }

    fn next_cc(&mut self, pid: u16) -> u8 {
        let slot = match pid {
            PID_PAT => 0,
            PID_PMT => 1,
            PID_VIDEO => 2,
            _ => 3,
        };
        let cc = self.cc[slot];
        self.cc[slot] = (cc + 1) & 0x0f;
        cc
    }
}

fn to_90k(ms: i64) -> i64 {
    ms * 90 + TS_OFFSET_90K
}

fn write_pes_header(
    out: &mut Vec<u8>,
    stream_id: u8,
    pts: i64,
    dts: Option<i64>,
    payload_len: usize,
) {
    let header_data_len = if dts.is_some() { 10 } else { 5 };
    // Video PES may be unbounded (length 0); audio frames always fit.
    let pes_len = if stream_id == 0xe0 {
        0
    } else {
        3 + header_data_len + payload_len
    };
    let pes_len = if pes_len > 0xffff { 0 } else { pes_len };
    out.extend_from_slice(&[
        0,
        0,
        1,
        stream_id,
        (pes_len >> 8) as u8,
        pes_len as u8,
        0x80,
    ]);
    out.push(if dts.is_some() { 0xc0 } else { 0x80 });
    out.push(header_data_len as u8);
    write_timestamp(out, if dts.is_some() { 0x3 } else { 0x2 }, pts);
    if let Some(dts) = dts {
        write_timestamp(out, 0x1, dts);
    }
}

fn write_timestamp(out: &mut Vec<u8>, marker: u8, ts: i64) {
    let ts = ts.max(0) as u64 & 0x1_ffff_ffff;
    out.extend_from_slice(&[
        (marker << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1,
        (ts >> 22) as u8,
        (((ts >> 15) as u8) << 1) | 1,
        (ts >> 7) as u8,
        ((ts as u8) << 1) | 1,
    ]);
}

/// CRC-32/MPEG-2 (polynomial 0x04C11DB7, not reflected, initial value all ones).
pub fn crc32_mpeg(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= (byte as u32) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_reference() {
        // The CRC of a section including its own CRC is zero; check against a known PAT.
        let pat = [
            0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00,
        ];
        assert_eq!(crc32_mpeg(&pat), 0x2ab1_04b2);
    }

    #[test]
    fn every_packet_is_188_bytes_with_sync_and_counters_advance() {
        let aac = AacConfig::parse(&[0x12, 0x10]).unwrap();
        let mut mux = TsMuxer::new(false, true);
        let mut out = Vec::new();
        mux.write_tables(&mut out);
        for len in [1usize, 170, 171, 172, 182, 183, 184, 400, 1000] {
            mux.write_audio(&aac, &vec![0x21; len], 0, &mut out);
        }
        assert_eq!(out.len() % PACKET, 0);
        let mut last_cc: Option<u8> = None;
        for packet in out.chunks(PACKET) {
            assert_eq!(packet[0], 0x47);
            let pid = (((packet[1] & 0x1f) as u16) << 8) | packet[2] as u16;
            if pid == PID_AUDIO {
                let cc = packet[3] & 0x0f;
                if let Some(last) = last_cc {
                    assert_eq!(cc, (last + 1) & 0x0f);
                }
                last_cc = Some(cc);
            }
        }
    }
}
