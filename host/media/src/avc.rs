//! H.264 (AVC) configuration: the AVCDecoderConfigurationRecord carried in FLV/MP4, the SPS
//! fields packaging needs (picture size), and conversion of AVCC frames to Annex B.

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum AvcError {
    #[error("AVC decoder configuration record is truncated")]
    Truncated,
    #[error("AVC decoder configuration record has version {0}, expected 1")]
    BadVersion(u8),
    #[error("AVC decoder configuration record carries no SPS or no PPS")]
    MissingParameterSets,
    #[error("SPS is malformed: {0}")]
    BadSps(&'static str),
    #[error("NAL unit length {len} runs past the end of the frame ({remaining} bytes left)")]
    BadNalLength { len: usize, remaining: usize },
}

/// A parsed AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.2.4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    pub profile: u8,
    pub level: u8,
    /// Bytes in each NAL length prefix (1, 2 or 4).
    pub nal_length_size: usize,
    pub sps: Vec<Vec<u8>>,
    pub pps: Vec<Vec<u8>>,
    pub width: u32,
    pub height: u32,
}

impl AvcConfig {
    pub fn parse(record: &[u8]) -> Result<Self, AvcError> {
        let mut r = ByteReader(record);
        let version = r.u8()?;
        if version != 1 {
            return Err(AvcError::BadVersion(version));
        }
        let profile = r.u8()?;
        let _compat = r.u8()?;
        let level = r.u8()?;
        let nal_length_size = (r.u8()? & 0x03) as usize + 1;
        let sps_count = r.u8()? & 0x1f;
        let mut sps = Vec::new();
        for _ in 0..sps_count {
            let len = r.u16()? as usize;
            sps.push(r.take(len)?.to_vec());
        }
        let pps_count = r.u8()?;
        let mut pps = Vec::new();
        for _ in 0..pps_count {
            let len = r.u16()? as usize;
            pps.push(r.take(len)?.to_vec());
        }
        let first_sps = sps.first().ok_or(AvcError::MissingParameterSets)?;
        if pps.is_empty() {
            return Err(AvcError::MissingParameterSets);
        }
        let (width, height) = sps_picture_size(first_sps)?;
        Ok(Self {
            profile,
            level,
            nal_length_size,
            sps,
            pps,
            width,
            height,
        })
    }

    /// Appends `frame` (AVCC: length-prefixed NAL units) to `out` as Annex B, preceded by an
    /// access unit delimiter, and with SPS/PPS in front of keyframes that lack them, so each
    /// HLS segment decodes on its own.
    pub fn write_annex_b(
        &self,
        frame: &[u8],
        keyframe: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), AvcError> {
        const START: [u8; 4] = [0, 0, 0, 1];
        out.extend_from_slice(&START);
        out.extend_from_slice(&[0x09, 0xf0]); // AUD, primary_pic_type = any
        let nals = split_avcc(frame, self.nal_length_size)?;
        let has_sps = nals.iter().any(|n| n.first().map(|b| b & 0x1f) == Some(7));
        if keyframe && !has_sps {
            for ps in self.sps.iter().chain(self.pps.iter()) {
                out.extend_from_slice(&START);
                out.extend_from_slice(ps);
            }
        }
        for nal in nals {
            // Publishers sometimes send their own AUD; ours already leads the access unit.
            if nal.first().map(|b| b & 0x1f) == Some(9) {
                continue;
            }
            out.extend_from_slice(&START);
            out.extend_from_slice(nal);
        }
        Ok(())
    }
}

/// Splits an AVCC frame into its NAL units.
pub fn split_avcc(frame: &[u8], nal_length_size: usize) -> Result<Vec<&[u8]>, AvcError> {
    nal_units(frame, nal_length_size).collect()
}

/// The NAL units of an Annex B byte stream (start codes of 3 or 4 bytes), without allocating.
/// Bytes before the first start code are skipped; a unit's trailing zero bytes are trimmed.
pub fn annex_b_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    /// Where the next start code begins at or after `from`, and its length.
    fn start_code(data: &[u8], from: usize) -> Option<(usize, usize)> {
        let mut i = from;
        while i + 3 <= data.len() {
            if data[i] == 0 && data[i + 1] == 0 {
                if data[i + 2] == 1 {
                    return Some((i, 3));
                }
                if data[i + 2] == 0 && data.get(i + 3) == Some(&1) {
                    return Some((i, 4));
                }
            }
            i += 1;
        }
        None
    }
    let mut next = start_code(data, 0).map(|(at, len)| at + len);
    std::iter::from_fn(move || {
        loop {
            let begin = next?;
            let end = match start_code(data, begin) {
                Some((at, len)) => {
                    next = Some(at + len);
                    at
                }
                None => {
                    next = None;
                    data.len()
                }
            };
            let mut unit = &data[begin..end];
            while let [rest @ .., 0] = unit {
                unit = rest;
            }
            if !unit.is_empty() {
                return Some(unit);
            }
        }
    })
}

/// The NAL units of an AVCC frame, without allocating; an error ends the iteration.
pub fn nal_units(
    frame: &[u8],
    nal_length_size: usize,
) -> impl Iterator<Item = Result<&[u8], AvcError>> {
    let mut rest = frame;
    let mut failed = false;
    std::iter::from_fn(move || {
        if rest.is_empty() || failed {
            return None;
        }
        if nal_length_size == 0 || rest.len() < nal_length_size {
            failed = true;
            return Some(Err(AvcError::BadNalLength {
                len: nal_length_size,
                remaining: rest.len(),
            }));
        }
        let len = rest[..nal_length_size]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        let body = &rest[nal_length_size..];
        if len > body.len() {
            failed = true;
            return Some(Err(AvcError::BadNalLength {
                len,
                remaining: body.len(),
            }));
        }
        rest = &body[len..];
        Some(Ok(&body[..len]))
    })
}

/// Reads the coded picture size (after cropping) from an SPS NAL unit (ITU-T H.264 §7.3.2.1.1).
pub fn sps_picture_size(sps: &[u8]) -> Result<(u32, u32), AvcError> {
    if sps.len() < 4 {
        return Err(AvcError::BadSps("too short"));
    }
    let rbsp = remove_emulation_prevention(&sps[1..]);
    let mut b = BitReader::new(&rbsp);
    let profile_idc = b.bits(8)?;
    b.bits(16)?; // constraint flags + level_idc
    b.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = b.ue()?;
        if chroma_format_idc == 3 {
            b.bits(1)?; // separate_colour_plane_flag
        }
        b.ue()?; // bit_depth_luma_minus8
        b.ue()?; // bit_depth_chroma_minus8
        b.bits(1)?; // qpprime_y_zero_transform_bypass_flag
        if b.bits(1)? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if b.bits(1)? == 1 {
                    skip_scaling_list(&mut b, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    b.ue()?; // log2_max_frame_num_minus4
    let pic_order_cnt_type = b.ue()?;
    if pic_order_cnt_type == 0 {
        b.ue()?;
    } else if pic_order_cnt_type == 1 {
        b.bits(1)?;
        b.se()?;
        b.se()?;
        let n = b.ue()?;
        if n > 255 {
            return Err(AvcError::BadSps("num_ref_frames_in_pic_order_cnt_cycle"));
        }
        for _ in 0..n {
            b.se()?;
        }
    }
    b.ue()?; // max_num_ref_frames
    b.bits(1)?; // gaps_in_frame_num_value_allowed_flag
    // Bounded before any arithmetic: a crafted SPS may carry any 32-bit value here.
    let width_mbs = b.ue()?;
    let height_map_units = b.ue()?;
    if width_mbs >= MAX_DIMENSION_MBS || height_map_units >= MAX_DIMENSION_MBS {
        return Err(AvcError::BadSps("picture size out of range"));
    }
    let (width_mbs, height_map_units) = (width_mbs + 1, height_map_units + 1);
    let frame_mbs_only = b.bits(1)?;
    if frame_mbs_only == 0 {
        b.bits(1)?; // mb_adaptive_frame_field_flag
    }
    b.bits(1)?; // direct_8x8_inference_flag
    let width = width_mbs * 16;
    let height = height_map_units * 16 * (2 - frame_mbs_only);
    let (mut width, mut height) = (width as u64, height as u64);
    if b.bits(1)? == 1 {
        let (left, right, top, bottom) = (
            b.ue()? as u64,
            b.ue()? as u64,
            b.ue()? as u64,
            b.ue()? as u64,
        );
        let (crop_x, crop_y) = match chroma_format_idc {
            0 => (1, 2 - frame_mbs_only as u64),
            1 => (2, 2 * (2 - frame_mbs_only as u64)),
            2 => (2, 2 - frame_mbs_only as u64),
            _ => (1, 2 - frame_mbs_only as u64),
        };
        width = width.saturating_sub((left + right) * crop_x);
        height = height.saturating_sub((top + bottom) * crop_y);
    }
    if width == 0 || height == 0 || width > 16384 || height > 16384 {
        return Err(AvcError::BadSps("picture size out of range"));
    }
    Ok((width as u32, height as u32))
}

/// Macroblocks per side beyond which a picture is refused (16384 pixels).
const MAX_DIMENSION_MBS: u32 = 1024;

fn skip_scaling_list(b: &mut BitReader<'_>, size: usize) -> Result<(), AvcError> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            let delta = b.se()?;
            next = (last + delta + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

fn remove_emulation_prevention(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &byte in data {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    out
}

struct ByteReader<'a>(&'a [u8]);

impl<'a> ByteReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AvcError> {
        if self.0.len() < n {
            return Err(AvcError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, AvcError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, AvcError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }
    fn bits(&mut self, n: u32) -> Result<u32, AvcError> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self
                .data
                .get(self.pos / 8)
                .ok_or(AvcError::BadSps("truncated"))?;
            v = (v << 1) | ((byte >> (7 - (self.pos % 8))) & 1) as u32;
            self.pos += 1;
        }
        Ok(v)
    }
    fn ue(&mut self) -> Result<u32, AvcError> {
        let mut zeros = 0;
        while self.bits(1)? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(AvcError::BadSps("exp-Golomb code too long"));
            }
        }
        Ok(((1u64 << zeros) - 1 + self.bits(zeros)? as u64) as u32)
    }
    fn se(&mut self) -> Result<i64, AvcError> {
        // ue() is at most 2^32 - 2, so this stays far from i64's limits.
        let k = self.ue()? as i64;
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annex_b_units_split_on_both_start_codes() {
        let data = [
            0xff, 0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 0, 1, 0x65, 4, 5, 0, 0, 1,
        ];
        let units: Vec<&[u8]> = annex_b_units(&data).collect();
        assert_eq!(
            units,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5][..]]
        );
        assert_eq!(annex_b_units(&[0, 0, 1]).count(), 0);
        assert_eq!(annex_b_units(&[1, 2, 3]).count(), 0);
        assert_eq!(annex_b_units(&[]).count(), 0);
    }

    fn record() -> Vec<u8> {
        crate::fixtures::avc_record_640x360()
    }

    #[test]
    fn parses_record_and_picture_size() {
        let cfg = AvcConfig::parse(&record()).unwrap();
        assert_eq!(cfg.nal_length_size, 4);
        assert_eq!((cfg.width, cfg.height), (640, 360));
        assert_eq!(cfg.sps.len(), 1);
        assert_eq!(cfg.pps.len(), 1);
    }

    #[test]
    fn truncated_record_is_an_error() {
        let r = record();
        assert_eq!(AvcConfig::parse(&r[..8]), Err(AvcError::Truncated));
        assert_eq!(AvcConfig::parse(&[2, 0, 0]), Err(AvcError::BadVersion(2)));
    }

    #[test]
    fn annex_b_adds_aud_and_parameter_sets_on_keyframes() {
        let cfg = AvcConfig::parse(&record()).unwrap();
        let idr = [0x65, 0x88, 0x84];
        let mut frame = (idr.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&idr);
        let mut out = Vec::new();
        cfg.write_annex_b(&frame, true, &mut out).unwrap();
        assert_eq!(&out[..6], &[0, 0, 0, 1, 0x09, 0xf0]);
        assert_eq!(&out[6..11], &[0, 0, 0, 1, 0x67]);
        assert!(out.ends_with(&[0, 0, 0, 1, 0x65, 0x88, 0x84]));
        let mut delta = Vec::new();
        cfg.write_annex_b(&frame, false, &mut delta).unwrap();
        assert_eq!(delta.len(), 6 + 4 + 3);
    }

    #[test]
    fn crafted_sps_values_are_errors_not_overflows() {
        // Baseline profile SPS whose width is the largest exp-Golomb value (2^32 - 2): 31 zero
        // bits, a one, 31 one bits.
        let mut bits = String::from("01000010"); // profile_idc 66
        bits += "0000000000011110"; // constraints, level 30
        bits += "1"; // seq_parameter_set_id 0
        bits += "1"; // log2_max_frame_num_minus4 0
        bits += "1"; // pic_order_cnt_type 0
        bits += "1"; // log2_max_pic_order_cnt_lsb_minus4 0
        bits += "1"; // max_num_ref_frames 0
        bits += "0"; // gaps
        bits += &"0".repeat(31);
        bits += "1";
        bits += &"1".repeat(31); // pic_width_in_mbs_minus1 = 2^32 - 2
        bits += "1"; // height 0
        bits += "1"; // frame_mbs_only
        bits += "1"; // direct_8x8
        bits += "1"; // cropping
        for _ in 0..4 {
            bits += &"0".repeat(31);
            bits += "1";
            bits += &"1".repeat(31);
        }
        while bits.len() % 8 != 0 {
            bits.push('1');
        }
        let mut sps = vec![0x67];
        for chunk in bits.as_bytes().chunks(8) {
            sps.push(u8::from_str_radix(std::str::from_utf8(chunk).unwrap(), 2).unwrap());
        }
        assert_eq!(
            sps_picture_size(&sps),
            Err(AvcError::BadSps("picture size out of range"))
        );
    }

    #[test]
    fn nal_units_iterate_without_allocating_and_stop_at_an_error() {
        let frame = [0, 0, 0, 2, 0x67, 1, 0, 0, 0, 1, 0x65, 0, 0, 0, 9, 1];
        let mut nals = nal_units(&frame, 4);
        assert_eq!(nals.next(), Some(Ok(&[0x67, 1][..])));
        assert_eq!(nals.next(), Some(Ok(&[0x65][..])));
        assert!(matches!(
            nals.next(),
            Some(Err(AvcError::BadNalLength { len: 9, .. }))
        ));
        assert_eq!(nals.next(), None);
        assert!(nal_units(&frame, 0).next().unwrap().is_err());
    }

    #[test]
    fn nal_length_past_end_is_an_error() {
        let frame = [0, 0, 0, 9, 0x65];
        assert!(matches!(
            split_avcc(&frame, 4),
            Err(AvcError::BadNalLength { len: 9, .. })
        ));
    }
}
