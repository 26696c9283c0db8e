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
