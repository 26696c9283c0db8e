//! Small, real codec data for tests in this and other crates (not used by the host itself).

/// SPS of an x264 640x360 High profile stream (ffmpeg testsrc2).
pub const SPS_640X360: &[u8] = &[
    0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
    0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2d, 0x96,
];
/// The matching PPS.
pub const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
/// AAC-LC 44.1 kHz stereo AudioSpecificConfig.
pub const AAC_LC_44100_STEREO: &[u8] = &[0x12, 0x10];

/// An AVCDecoderConfigurationRecord (as in an FLV/MP4 sequence header) for the SPS/PPS above.
pub fn avc_record_640x360() -> Vec<u8> {
    let mut r = vec![1, 0x64, 0x00, 0x1e, 0xff, 0xe1];
    r.extend_from_slice(&(SPS_640X360.len() as u16).to_be_bytes());
    r.extend_from_slice(SPS_640X360);
    r.push(1);
    r.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
    r.extend_from_slice(PPS);
    r
}

/// A Baseline-profile SPS NAL unit declaring a `width`×`height` picture (multiples of 16 are
/// exact; other sizes are cropped down from the next multiple). For tests of size limits.
pub fn sps_for_size(width: u32, height: u32) -> Vec<u8> {
    let mut bits = BitWriter::default();
    bits.u(8, 66); // profile_idc: Baseline
    bits.u(8, 0); // constraint flags
    bits.u(8, 40); // level_idc
    bits.ue(0); // seq_parameter_set_id
    bits.ue(0); // log2_max_frame_num_minus4
    bits.ue(0); // pic_order_cnt_type
    bits.ue(0); // log2_max_pic_order_cnt_lsb_minus4
    bits.ue(1); // max_num_ref_frames
    bits.u(1, 0); // gaps_in_frame_num_value_allowed_flag
    let (mbs_w, mbs_h) = (width.div_ceil(16), height.div_ceil(16));
    bits.ue(mbs_w - 1);
    bits.ue(mbs_h - 1);
    bits.u(1, 1); // frame_mbs_only_flag
    bits.u(1, 1); // direct_8x8_inference_flag
    let (crop_right, crop_bottom) = ((mbs_w * 16 - width) / 2, (mbs_h * 16 - height) / 2);
    if crop_right > 0 || crop_bottom > 0 {
        bits.u(1, 1);
        bits.ue(0);
        bits.ue(crop_right);
        bits.ue(0);
        bits.ue(crop_bottom);
    } else {
        bits.u(1, 0);
    }
    bits.u(1, 0); // vui_parameters_present_flag
    bits.u(1, 1); // rbsp_stop_one_bit
    let rbsp = bits.finish();
    // NAL header, then the RBSP with emulation prevention bytes.
    let mut nal = vec![0x67];
    let mut zeros = 0;
    for byte in rbsp {
        if zeros >= 2 && byte <= 3 {
            nal.push(3);
            zeros = 0;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        nal.push(byte);
    }
    nal
}

/// An AVCDecoderConfigurationRecord carrying [`sps_for_size`] and [`PPS`].
pub fn avc_record_for_size(width: u32, height: u32) -> Vec<u8> {
    let sps = sps_for_size(width, height);
    let mut r = vec![1, 66, 0, 40, 0xff, 0xe1];
    r.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    r.extend_from_slice(&sps);
    r.push(1);
    r.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
    r.extend_from_slice(PPS);
    r
}

#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    bit: u32,
}

impl BitWriter {
    fn u(&mut self, n: u32, value: u32) {
        for i in (0..n).rev() {
            if self.bit.is_multiple_of(8) {
                self.bytes.push(0);
            }
            let b = ((value >> i) & 1) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= b << (7 - self.bit % 8);
            }
            self.bit += 1;
        }
    }

    fn ue(&mut self, value: u32) {
        let v = value as u64 + 1;
        let len = 64 - v.leading_zeros();
        self.u(len - 1, 0);
        for i in (0..len).rev() {
            self.u(1, ((v >> i) & 1) as u32);
        }
    }

    fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sps_for_size_declares_that_size() {
        for (w, h) in [
            (640, 360),
            (1920, 1080),
            (8192, 4320),
            (1080, 1920),
            (176, 144),
        ] {
            assert_eq!(
                crate::avc::sps_picture_size(&super::sps_for_size(w, h)),
                Ok((w, h))
            );
        }
    }
}
