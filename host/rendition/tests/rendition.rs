//! The effects rendition of a made-up stream, end to end inside the crate: packets through the
//! packager's segmenter and tap, effects through the timeline, the rendition written to disk and
//! decoded again. Its segments have the original's numbers, durations and timestamps; inside the
//! blurred regions its pictures are smooth where the original's are not; elsewhere they are the
//! original's (bar encoding).

use std::path::Path;
use std::time::{Duration, Instant};

use hls::{Segmenter, Taps};
use rendition::{RenditionConfig, Renditions};

const W: u32 = 640;
const H: u32 = 360;

/// Every frame of a TS file: (pts, RGB).
fn decode(path: &Path) -> Vec<(i64, Vec<u8>)> {
    let mut source = decode::FileSource::open(path.to_str().unwrap(), 1).unwrap();
    let mut frames = Vec::new();
    let mut out = Vec::new();
    while source.next_frames(&mut out).unwrap() {
        for f in out.drain(..) {
            frames.push((f.pts_ms, f.rgb.to_vec()));
        }
    }
    frames
}

/// Detail in a box: the mean absolute second difference along rows (red, where the picture's fine
/// pattern is). A blur leaves gradients, whose second difference is next to nothing; edges and
/// texture have a lot.
fn texture(rgb: &[u8], [x0, y0, x1, y1]: [u32; 4]) -> f64 {
    let (mut sum, mut n) = (0u64, 0u64);
    let at = |x: u32, y: u32| rgb[((y * W + x) * 3) as usize] as i64;
    for y in y0..y1 {
        for x in x0 + 1..x1 - 1 {
            sum += (at(x - 1, y) - 2 * at(x, y) + at(x + 1, y)).unsigned_abs();
            n += 1;
        }
    }
    sum as f64 / n as f64
}

/// A rendition under `root` rendered on the CPU and encoded by libx264, waiting `max_wait` for
/// analysis.
fn on_the_cpu(root: &Path, max_wait: Duration) -> RenditionConfig {
    on(effects::DevicePreference::Cpu, root, max_wait)
}

fn on(device: effects::DevicePreference, root: &Path, max_wait: Duration) -> RenditionConfig {
    RenditionConfig {
        root: root.to_path_buf(),
        device,
        // A hardware GPU's way, on the software device here.
        yuv_on_device: Some(true),
        encoder: rendition::EncoderChoice::X264,
        max_wait,
        ..RenditionConfig::default()
    }
}

/// PSNR of the red channel in a box.
fn psnr(a: &[u8], b: &[u8], [x0, y0, x1, y1]: [u32; 4]) -> f64 {
    let (mut sum, mut n) = (0f64, 0f64);
    for y in y0..y1 {
        for x in x0..x1 {
            let i = ((y * W + x) * 3) as usize;
            let d = a[i] as f64 - b[i] as f64;
            sum += d * d;
            n += 1.0;
        }
    }
    10.0 * (255.0 * 255.0 / (sum / n).max(1e-9)).log10()
}

#[test]
fn the_rendition_has_the_originals_segments_and_blurs_the_regions() {
    rendition_of_four_faces(effects::DevicePreference::Cpu);
}

/// The same on the software Vulkan device the way a hardware GPU goes: the decoder's YUV goes up
/// as it is and the rendered frames reach the encoder as YUV converted on the device
/// (shaders/from_yuv.wgsl, shaders/to_yuv.wgsl).
#[test]
fn the_rendition_on_a_device_hands_the_encoder_yuv_from_the_device() {
    rendition_of_four_faces(effects::DevicePreference::Software);
}

fn rendition_of_four_faces(device: effects::DevicePreference) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let packets = rendition::bench::synthetic_stream(W, H, 30, 6.5, 30).unwrap();
    let taps = Taps::default();
    let renditions = Renditions::new(
        // The whole stream is tapped at once here, so its lag is the stream's length: a long
        // wait keeps the rendition at full rate (every analysed frame is there already).
        on(device, &root, Duration::from_secs(10)),
        taps.clone(),
    );
    // The analysis output: four faces blurred on every analysed frame (every 200 ms).
    let faces = rendition::bench::four_faces();
    let mut output = renditions.stream("s");
    output.frame(true, analysed(0, W, H, &faces, true));
    assert!(renditions.is_running("s"));
    let mut pts = 200;
    while pts <= 7000 {
        output.frame(true, analysed(pts, W, H, &faces, true));
        pts += 200;
    }

    let records = package_to_the_end(&root, &packets, &taps, &renditions);
    let original = root.join("s");
    assert_eq!(records.len(), 4, "{records:?}");
    drop(output);

    // The same segments, numbers, durations and program date-times; the playlist ended.
    let effects = original.join("effects");
    let playlist = std::fs::read_to_string(effects.join("index.m3u8")).unwrap();
    for r in &records {
        let line = format!(
            "#EXTINF:{}.{:03},\n{}\n",
            r.duration_ms / 1000,
            r.duration_ms % 1000,
            r.file_name()
        );
        assert!(playlist.contains(&line), "{line} not in {playlist}");
        assert!(playlist.contains(&hls::playlist::format_pdt(r.program_date_time_ms)));
    }
    assert!(!playlist.contains("GAP"), "{playlist}");
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"));
    let master = std::fs::read_to_string(original.join(hls::rendition::MASTER_PLAYLIST)).unwrap();
    assert!(
        master.contains("\nindex.m3u8\n")
            && master.contains("RESOLUTION=640x360\neffects/index.m3u8\n"),
        "{master}"
    );

    let stats = renditions.stats();
    assert_eq!(stats.gaps.load(std::sync::atomic::Ordering::Relaxed), 0);
    let rendered = stats
        .frames_rendered
        .load(std::sync::atomic::Ordering::Relaxed);
    let on_device = stats
        .frames_yuv_on_device
        .load(std::sync::atomic::Ordering::Relaxed);
    match device {
        effects::DevicePreference::Cpu => assert_eq!(on_device, 0),
        // Every frame has faces to blur: every one went through the device's conversion.
        _ => assert_eq!(on_device, rendered, "{on_device} of {rendered} frames"),
    }
    let face = |i: u32| {
        let x = (W as f32 * (0.1 + 0.2 * i as f32)) as u32;
        let y = (H as f32 * 0.3) as u32;
        [
            x + 2,
            y + 2,
            x + (W as f32 * 0.06) as u32 - 2,
            y + (H as f32 * 0.1) as u32 - 2,
        ]
    };
    let mut compared = 0;
    for r in &records {
        let ours = decode(&effects.join(r.file_name()));
        let theirs = decode(&original.join(r.file_name()));
        // Every frame, at the same times (the same PTS in both files).
        assert_eq!(
            ours.iter().map(|f| f.0).collect::<Vec<_>>(),
            theirs.iter().map(|f| f.0).collect::<Vec<_>>(),
            "segment {}",
            r.seq
        );
        for ((_, a), (_, b)) in ours.iter().zip(&theirs).step_by(7) {
            for i in 0..4 {
                let (blurred, sharp) = (texture(a, face(i)), texture(b, face(i)));
                assert!(
                    blurred < sharp / 3.0,
                    "segment {} face {i}: texture {blurred:.1} vs {sharp:.1} in the original",
                    r.seq
                );
            }
            // Away from the faces: the original's picture, bar the encoding.
            let clear = psnr(a, b, [0, 0, W, H / 4]);
            assert!(
                clear > 25.0,
                "segment {}: {clear:.1} dB away from the faces",
                r.seq
            );
            compared += 1;
        }
    }
    assert!(compared >= 20, "{compared}");
}

/// The packager for stream `s`: the original's segments written (2 s each) as it writes them,
/// each packet tapped; then waits for the rendition to end. The segments' records.
fn package_to_the_end(
    root: &Path,
    packets: &[media::MediaPacket],
    taps: &Taps,
    renditions: &Renditions,
) -> Vec<hls::Segment> {
    let records = package(root, packets, taps);
    wait_for_the_end(renditions);
    records
}

/// The packager's part of [`package_to_the_end`].
fn package(root: &Path, packets: &[media::MediaPacket], taps: &Taps) -> Vec<hls::Segment> {
    let original = root.join("s");
    let mut segmenter = Segmenter::new(0, 2000, false);
    let mut configs = hls::tap::Configs::default();
    let mut records = Vec::new();
    let mut write = |f: hls::FinishedSegment| {
        std::fs::write(original.join(f.segment.file_name()), &f.data).unwrap();
        records.push(f.segment);
    };
    std::fs::create_dir_all(&original).unwrap();
    for p in packets {
        if let Some(f) = taps
            .push("s", &mut segmenter, &mut configs, p, 1_700_000_000_000)
            .unwrap()
        {
            write(f);
        }
    }
    if let Some(f) = taps.finish("s", &mut segmenter) {
        write(f);
    }
    records
}

fn wait_for_the_end(renditions: &Renditions) {
    let started = Instant::now();
    while renditions.is_running("s") {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the rendition never ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An analysed frame as the analysis output hands it over (`complete`: no selector failed on
/// it; `privacy-blur` runs on the stream).
fn analysed(
    pts_ms: i64,
    width: u32,
    height: u32,
    effects: &[bus::Effect],
    complete: bool,
) -> rendition::AnalysedEffects {
    rendition::AnalysedEffects {
        pts_ms,
        width,
        height,
        effects: effects.to_vec(),
        complete,
        privacy: true,
    }
}

/// Fail closed: analysis stops after 2 s; with `OnStall::BlurFrame` every frame from then on is
/// blurred whole (no face it last saw elsewhere can air), the frames before are untouched, and
/// the stalled frames are counted.
#[test]
fn when_analysis_stalls_blur_frame_hides_the_whole_picture() {
    stalled_frames_are_blurred_whole(rendition::OnStall::BlurFrame, 2000);
}

/// The same when analysis goes on but an effect selector fails on every frame from 2 s (its
/// frames are incomplete): on a stream with `privacy-blur`, the default `OnStall::Auto` fails
/// closed.
#[test]
fn when_a_selector_keeps_failing_a_privacy_stream_is_blurred_whole() {
    stalled_frames_are_blurred_whole(rendition::OnStall::Auto, 4500);
}

/// Analysed frames every 200 ms up to `analysed_until`, complete up to 2 s.
fn stalled_frames_are_blurred_whole(on_stall: rendition::OnStall, analysed_until: i64) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let packets = rendition::bench::synthetic_stream(W, H, 30, 4.5, 30).unwrap();
    let taps = Taps::default();
    let renditions = Renditions::new(
        RenditionConfig {
            on_stall,
            ..on_the_cpu(&root, Duration::from_millis(20))
        },
        taps.clone(),
    );
    let mut output = renditions.stream("s");
    let mut pts = 0;
    while pts <= analysed_until {
        output.frame(true, analysed(pts, W, H, &[], pts <= 2000));
        pts += 200;
    }
    let records = package_to_the_end(&root, &packets, &taps, &renditions);
    assert_eq!(records.len(), 3, "{records:?}");
    let stalled = renditions
        .stats()
        .frames_stalled
        .load(std::sync::atomic::Ordering::Relaxed);
    // 2.5 s after the analysis stopped: 75 frames, or half as many once the rendition lowered
    // its frame rate (the whole stream is tapped at once, so it lags by the stream's length).
    assert!(stalled >= 30, "{stalled} stalled frames");
    let whole = [0, 0, W, H];
    // Decoded timestamps carry the segmenter's base: the stream's first frame is at time 0.
    let base = decode(&root.join("s").join(records[0].file_name()))[0].0;
    for r in &records {
        let ours = decode(&root.join("s/effects").join(r.file_name()));
        let theirs = decode(&root.join("s").join(r.file_name()));
        // At a lowered frame rate the rendition has every other frame: compared by timestamp.
        assert!(!ours.is_empty(), "segment {}", r.seq);
        for (pts, a) in ours.iter().step_by(3) {
            let (_, b) = theirs
                .iter()
                .find(|(p, _)| p == pts)
                .expect("the same timestamps");
            let (ours, sharp) = (texture(a, whole), texture(b, whole));
            let at = pts - base;
            if at < 2000 {
                assert!(psnr(a, b, whole) > 25.0, "frame {at} changed");
            } else if at > 2000 {
                assert!(
                    ours < sharp / 3.0,
                    "frame {at}: texture {ours:.1} vs {sharp:.1} in the original"
                );
            }
        }
    }
    drop(output);
}

/// A rendition that falls further behind than its `max_lag` (a host short of CPU) skips to the
/// original's newest segment: the segments it skipped are listed as gaps, and it goes on from a
/// segment start near live at its cheapest level (half the size, every fourth frame), so its lag
/// stays bounded instead of growing for as long as the stream lasts.
#[test]
fn a_rendition_too_far_behind_skips_to_the_newest_segment() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    // 13.5 s tapped: once every packet is in, of the segment starts (every 2 s) only the last,
    // 1.5 s behind, is within half of `max_lag`.
    let packets = rendition::bench::synthetic_stream(W, H, 30, 13.5, 60).unwrap();
    let taps = Taps::default();
    let renditions = Renditions::new(
        RenditionConfig {
            max_lag: Some(Duration::from_secs(4)),
            // Its first frame to render waits for the analysis after it, which comes once every
            // packet is tapped.
            ..on_the_cpu(&root, Duration::from_secs(30))
        },
        taps.clone(),
    );
    let faces = rendition::bench::four_faces();
    let mut output = renditions.stream("s");
    output.frame(true, analysed(0, W, H, &faces, true));
    let records = package(&root, &packets, &taps);
    let mut pts = 200;
    while pts <= 14_000 {
        output.frame(true, analysed(pts, W, H, &faces, true));
        pts += 200;
    }
    wait_for_the_end(&renditions);
    drop(output);
    assert_eq!(records.len(), 7, "{records:?}");
    // The reader may see the packets while they are still being tapped (a loaded machine): it
    // may then skip once early, resume at a start that was near the newest then, and skip again
    // once the analysis lets it go; segment 5 (3.5 s from the end) may then be made. Segments 0-4
    // are more than `max_lag` behind the end whenever it renders them: always skipped.
    let stats = renditions.stats();
    let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert!(count(&stats.catch_ups) >= 1);
    assert!(
        (5..=6).contains(&count(&stats.gaps)),
        "{}",
        count(&stats.gaps)
    );
    let playlist = std::fs::read_to_string(root.join("s/effects/index.m3u8")).unwrap();
    // The live window's entries (its last 6): gaps up to segment 4, the last one made.
    for (i, r) in records.iter().enumerate().skip(1) {
        let at = playlist.find(&format!("\n{}\n", r.file_name()));
        let entry = &playlist[..at.unwrap_or_else(|| panic!("{i} not in {playlist}"))];
        let entry = &entry[entry.rfind("#EXT-X-PROGRAM-DATE-TIME").unwrap()..];
        let gap = entry.contains("#EXT-X-GAP");
        assert!(
            (i <= 4 && gap) || i == 5 || (i == 6 && !gap),
            "segment {i}: {playlist}"
        );
    }
    // The last segment: made at the cheapest level, at the original's timestamps.
    let last = records.last().unwrap();
    let ours = decode(&root.join("s/effects").join(last.file_name()));
    let theirs = decode(&root.join("s").join(last.file_name()));
    assert!(
        (ours.len() as i64 - theirs.len().div_ceil(4) as i64).abs() <= 1,
        "{} frames of {}",
        ours.len(),
        theirs.len()
    );
    for (pts, rgb) in &ours {
        assert_eq!(rgb.len() as u32, W / 2 * (H / 2) * 3, "frame {pts}");
        assert!(theirs.iter().any(|(p, _)| p == pts), "frame {pts}");
    }
}

#[test]
fn stopping_ends_the_playlist_and_removes_the_master() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let packets = rendition::bench::synthetic_stream(320, 180, 30, 4.5, 30).unwrap();
    let taps = Taps::default();
    let renditions = Renditions::new(on_the_cpu(&root, Duration::from_millis(50)), taps.clone());
    let mut output = renditions.stream("s");
    output.frame(true, analysed(0, 320, 180, &[], true));
    let mut segmenter = Segmenter::new(10, 1000, false);
    let mut configs = hls::tap::Configs::default();
    for p in &packets {
        taps.push("s", &mut segmenter, &mut configs, p, 0).unwrap();
    }
    // Wait for segments to be listed, then the effects stage goes.
    let playlist = root.join("s").join("effects").join("index.m3u8");
    let started = Instant::now();
    while !std::fs::read_to_string(&playlist).is_ok_and(|p| p.contains("seg-12.ts")) {
        assert!(started.elapsed() < Duration::from_secs(60), "no segments");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        root.join("s")
            .join(hls::rendition::MASTER_PLAYLIST)
            .exists()
    );
    output.frame(false, analysed(4000, 320, 180, &[], true));
    while renditions.is_running("s") {
        assert!(started.elapsed() < Duration::from_secs(60), "never stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!taps.is_open("s"));
    let text = std::fs::read_to_string(&playlist).unwrap();
    assert!(
        text.starts_with("#EXTM3U") && text.contains("seg-10.ts"),
        "{text}"
    );
    assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    assert!(
        !root
            .join("s")
            .join(hls::rendition::MASTER_PLAYLIST)
            .exists()
    );
}
