//! FLV audio/video tag bodies, AVC decoder configuration records, SPS and AVCC frames; Annex B
//! access units (an encoder's output) split and muxed as the effects rendition does.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use media::avc::{AvcConfig, annex_b_units, nal_units, sps_picture_size};
use rtmp::flv::{FlvTag, parse_audio, parse_video};

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    if let Ok(FlvTag::VideoConfig { config, .. }) = parse_video(&body) {
        assert!(config.width > 0 && config.height > 0);
        let mut out = Vec::new();
        let _ = config.write_annex_b(data, true, &mut out);
    }
    let _ = parse_audio(&body);
    if let Ok(config) = AvcConfig::parse(data) {
        let mut out = Vec::new();
        let _ = config.write_annex_b(data, data.first().is_some_and(|b| b & 1 == 1), &mut out);
    }
    let _ = sps_picture_size(data);
    // Every Annex B unit is a non-empty piece of the input after its own start code.
    let mut units = 0usize;
    for unit in annex_b_units(data) {
        assert!(!unit.is_empty() && unit.len() + 3 <= data.len());
        units += 1;
    }
    assert!(units <= data.len() / 4 + 1);
    let mut mux = hls::ts::TsMuxer::new(true, false);
    let mut ts = Vec::new();
    mux.write_video_annex_b(data, data.first().is_some_and(|b| b & 2 == 2), 40, 40, &mut ts);
    assert_eq!(ts.len() % 188, 0);
    for size in 1..=4 {
        for nal in nal_units(data, size) {
            if nal.is_err() {
                break;
            }
        }
    }
});
