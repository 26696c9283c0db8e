use super::*;
use std::process::Command;

/// Writes `seconds` of a 320x240 30 fps H.264 test pattern with the ffmpeg CLI.
fn clip(dir: &std::path::Path, name: &str, seconds: u32, format: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args([
            "-i",
            &format!("testsrc2=size=320x240:rate=30:duration={seconds}"),
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "30",
            "-bf",
            "2",
            "-pix_fmt",
            "yuv420p",
            "-f",
            format,
        ])
        .arg(&path)
        .status()
        .expect("ffmpeg is required for decode tests (scripts/setup installs it)");
    assert!(status.success());
    path
}

#[test]
fn decodes_every_frame_of_a_file_in_presentation_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), "clip.mp4", 2, "mp4");
    let mut source = FileSource::open(path.to_str().unwrap(), 1).unwrap();
    assert_eq!((source.width, source.height), (320, 240));
    let mut frames = Vec::new();
    let mut batch = Vec::new();
    while source.next_frames(&mut batch).unwrap() {
        frames.append(&mut batch);
    }
    assert_eq!(frames.len(), 60);
    assert!(frames.iter().all(|f| f.rgb.len() == 320 * 240 * 3));
    let pts: Vec<i64> = frames.iter().map(|f| f.pts_ms).collect();
    assert!(pts.windows(2).all(|w| w[1] > w[0]), "{pts:?}");
    assert!((pts[59] - pts[0] - 59 * 1000 / 30).abs() <= 2, "{pts:?}");
    // testsrc2 is colourful, not a blank frame.
    let distinct: std::collections::HashSet<&[u8]> = frames[0].rgb.chunks(3).collect();
    assert!(distinct.len() > 50);
}

#[test]
fn a_missing_or_broken_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = FileSource::open(dir.path().join("nope.mp4").to_str().unwrap(), 1)
        .err()
        .unwrap();
    assert!(err.to_string().contains("nope.mp4"), "{err}");
    let garbage = dir.path().join("garbage.mp4");
    std::fs::write(&garbage, vec![0x42u8; 4096]).unwrap();
    assert!(FileSource::open(garbage.to_str().unwrap(), 1).is_err());
}

/// Live input arrives as FLV-style AVCC frames plus a configuration record: read an FLV made by
/// the ffmpeg CLI, feed its tags as hub packets, and resynchronise after a simulated loss.
#[test]
fn live_h264_from_flv_tags_with_resync() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), "clip.flv", 3, "flv");
    let packets = flv_video_packets(&std::fs::read(path).unwrap());
    assert!(packets[0].is_config);
    let mut decoder = VideoDecoder::live_h264(2).unwrap();
    let mut frames = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        // Lose packets 20..25 (mid-GOP): the decoder must skip to the next keyframe (index 31).
        if (20..25).contains(&i) {
            continue;
        }
        if i == 25 {
            decoder.resync();
        }
        decoder.push(p, &mut frames).unwrap();
    }
    decoder.finish(&mut frames).unwrap();
    // 90 frames in the file; frames 19..29 (pts) cannot be shown without the lost references.
    assert!(frames.len() >= 70 && frames.len() <= 85, "{}", frames.len());
    assert!(frames.iter().all(|f| (f.width, f.height) == (320, 240)));
}

fn flv_video_packets(flv: &[u8]) -> Vec<media::MediaPacket> {
    let mut out = Vec::new();
    let mut pos = 9 + 4; // header + PreviousTagSize0
    while pos + 11 <= flv.len() {
        let kind = flv[pos];
        let size = u32::from_be_bytes([0, flv[pos + 1], flv[pos + 2], flv[pos + 3]]) as usize;
        let ts =
            u32::from_be_bytes([flv[pos + 7], flv[pos + 4], flv[pos + 5], flv[pos + 6]]) as i64;
        let body = &flv[pos + 11..pos + 11 + size];
        if kind == 9 && body.len() > 5 && body[0] & 0x0f == 7 {
            let cts = (((body[2] as i32) << 24 | (body[3] as i32) << 16 | (body[4] as i32) << 8)
                >> 8) as i64;
            out.push(media::MediaPacket {
                kind: media::MediaKind::Video,
                dts_ms: ts,
                pts_ms: ts + cts,
                keyframe: body[0] >> 4 == 1,
                is_config: body[1] == 0,
                data: body[5..].to_vec().into(),
            });
        }
        pos += 11 + size + 4;
    }
    out
}

/// Decoding adapts to what analysis takes: frames nobody wants are not converted, and lighter
/// efforts decode fewer frames (no B-frames; keyframes only), coming back cleanly at a keyframe.
#[test]
fn unwanted_frames_cost_no_conversion_and_efforts_decode_less() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), "clip.flv", 3, "flv");
    let packets = flv_video_packets(&std::fs::read(path).unwrap());
    let run = |configure: &dyn Fn(&mut VideoDecoder, usize)| {
        let mut decoder = VideoDecoder::live_h264(1).unwrap();
        let mut frames = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            configure(&mut decoder, i);
            decoder.push(p, &mut frames).unwrap();
        }
        decoder.finish(&mut frames).unwrap();
        (frames, decoder.passed)
    };
    let (all, passed) = run(&|_, _| {});
    assert_eq!((all.len(), passed), (90, 0));
    // Only every third frame wanted: the rest are decoded (references) but not converted.
    let (some, passed) = run(&|d, i| d.set_wanted(i % 3 == 0));
    assert_eq!(some.len() as u64 + passed, 90);
    assert!(some.len() < 40, "{}", some.len());
    let seqs: Vec<u64> = some.iter().map(|f| f.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] > w[0]),
        "sequence numbers keep counting: {seqs:?}"
    );
    // Light: the non-reference B-frames are not decoded at all.
    let (light, _) = run(&|d, _| d.set_effort(DecodeEffort::Light));
    assert!(light.len() < 80 && light.len() >= 30, "{}", light.len());
    // Anchors: I and P frames only, fewer still, and every one of them exact.
    let (anchors, _) = run(&|d, _| d.set_effort(DecodeEffort::Anchors));
    assert!(
        anchors.len() < light.len() && anchors.len() >= 3,
        "anchors {} light {}",
        anchors.len(),
        light.len()
    );
    // Back from anchors to full waits for the next keyframe and decodes anchors until then:
    // the second and third seconds are whole, the first has its anchors.
    let (anchors_back, _) = run(&|d, i| {
        d.set_effort(if i < 20 {
            DecodeEffort::Anchors
        } else {
            DecodeEffort::Full
        })
    });
    let first_second = anchors.iter().filter(|f| f.pts_ms < 1000).count();
    assert!(
        (first_second + 60..=first_second + 2 + 60).contains(&anchors_back.len()),
        "{} frames, {first_second} anchors in the first second",
        anchors_back.len()
    );
    // Keyframes only: one frame per second of this clip (GOP 30 at 30 fps).
    let (keys, _) = run(&|d, _| d.set_effort(DecodeEffort::KeyframesOnly));
    assert_eq!(keys.len(), 3);
    // Keyframes only for the first second, then full again from the next keyframe.
    let (back, _) = run(&|d, i| {
        d.set_effort(if i < 20 {
            DecodeEffort::KeyframesOnly
        } else {
            DecodeEffort::Full
        })
    });
    assert!(back.len() >= 60 && back.len() <= 62, "{}", back.len());
}

/// Asked for I420, the live decoder hands out its YUV 4:2:0 planes unconverted (no RGB), and
/// they are the picture the RGB frames show: converted back with BT.601 they match the RGB
/// conversion closely.
#[test]
fn i420_frames_are_the_decoders_planes() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), "clip.flv", 1, "flv");
    let packets = flv_video_packets(&std::fs::read(path).unwrap());
    let decode_all = |i420: bool| {
        let mut decoder = VideoDecoder::live_h264(1).unwrap();
        decoder.set_i420(i420);
        let mut frames = Vec::new();
        for p in &packets {
            decoder.push(p, &mut frames).unwrap();
        }
        decoder.finish(&mut frames).unwrap();
        frames
    };
    let (rgb, yuv) = (decode_all(false), decode_all(true));
    assert_eq!(rgb.len(), yuv.len());
    assert!(rgb.iter().all(|f| f.i420.is_none()));
    for (a, b) in rgb.iter().zip(&yuv) {
        assert_eq!((a.pts_ms, a.seq), (b.pts_ms, b.seq));
        assert!(b.rgb.is_empty());
        let planes = b.i420.as_ref().expect("an I420 frame");
        assert_eq!(planes.len(), 320 * 240 * 3 / 2);
    }
    // Pixel (x, y) of the first frame from its planes, by BT.601 limited range.
    let (f, planes) = (&rgb[0], yuv[0].i420.as_ref().unwrap());
    let (w, h) = (320usize, 240usize);
    let mut worst = 0f64;
    for (x, y) in [(10, 10), (100, 50), (200, 120), (310, 230), (160, 200)] {
        let luma = planes[y * w + x] as f64;
        let c = (y / 2) * (w / 2) + x / 2;
        let (u, v) = (
            planes[w * h + c] as f64 - 128.0,
            planes[w * h * 5 / 4 + c] as f64 - 128.0,
        );
        let l = 1.164 * (luma - 16.0);
        let want = [l + 1.596 * v, l - 0.392 * u - 0.813 * v, l + 2.017 * u];
        for (k, want) in want.iter().enumerate() {
            let got = f.rgb[(y * w + x) * 3 + k] as f64;
            worst = worst.max((want.clamp(0.0, 255.0) - got).abs());
        }
    }
    // libswscale interpolates chroma between samples; the planes' own sample is near.
    assert!(worst < 40.0, "{worst}");
}
