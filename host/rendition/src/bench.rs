//! `media-analyzer bench rendition`: the CPU an effects rendition costs per stream, against the
//! plain remux of the same packets (the original rendition's path), in one run. The stream is
//! made here: a moving picture encoded by libx264 as OBS would send it, with four faces blurred on
//! every analysed frame (every 200 ms).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hls::{Segmenter, Taps};
use media::{MediaKind, MediaPacket};

use crate::encode::{Encoder, EncoderChoice};
use crate::stream::StreamRendition;
use crate::timeline::{AnalysedEffects, Timeline};
use crate::{Error, RenditionConfig, RenditionStats};

/// A picture of `width`×`height` at frame `i`: the effects bench's textured frame under a
/// checker of 4-pixel cells (detail an encoder keeps and a blur removes), with a bright square
/// moving across it, so every frame costs the encoder something.
pub fn moving_picture(width: u32, height: u32, i: u32) -> Vec<u8> {
    let mut frame = effects::bench::test_frame(width, height);
    for (p, px) in frame.pixels.chunks_exact_mut(4).enumerate() {
        let (x, y) = (p as u32 % width, p as u32 / width);
        if (x / 4 + y / 4) % 2 == 0 {
            for c in &mut px[..3] {
                *c = c.saturating_add(70);
            }
        }
    }
    let side = (height / 5).max(2);
    let x0 = (i * 8) % width.saturating_sub(side).max(1);
    for y in height / 3..(height / 3 + side).min(height) {
        for x in x0..(x0 + side).min(width) {
            let o = ((y * width + x) * 4) as usize;
            frame.pixels[o..o + 3].copy_from_slice(&[250, 240, 60]);
        }
    }
    frame.pixels
}

/// The AVC decoder configuration record for `sps` and `pps` (NAL units without start codes).
pub fn avc_record(sps: &[u8], pps: &[u8]) -> Vec<u8> {
    let mut r = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
    r.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    r.extend_from_slice(sps);
    r.push(1);
    r.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    r.extend_from_slice(pps);
    r
}

/// `seconds` of `width`×`height` video at `fps` with a keyframe every `gop_frames`, as hub
/// packets (AVCC frames after an AVC configuration packet), as a publisher sends them.
pub fn synthetic_stream(
    width: u32,
    height: u32,
    fps: u32,
    seconds: f64,
    gop_frames: u32,
) -> Result<Vec<MediaPacket>, Error> {
    let mut encoder = Encoder::open(
        EncoderChoice::X264,
        (width, height),
        (width, height),
        fps,
        2,
    )?;
    let frames = (seconds * fps as f64).round() as u32;
    let mut encoded = Vec::new();
    for i in 0..frames {
        let pts = i as i64 * 1000 / fps as i64;
        encoder.encode(
            &moving_picture(width, height, i),
            pts,
            i.is_multiple_of(gop_frames.max(1)),
            &mut encoded,
        )?;
    }
    encoder.finish(&mut encoded)?;
    let mut packets = Vec::with_capacity(encoded.len() + 1);
    for e in encoded {
        let mut avcc = Vec::with_capacity(e.data.len() + 16);
        for nal in media::avc::annex_b_units(&e.data) {
            if nal[0] & 0x1f == 9 {
                continue; // the packager writes its own access unit delimiters
            }
            avcc.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            avcc.extend_from_slice(nal);
        }
        if packets.is_empty() {
            let sps = media::avc::annex_b_units(&e.data).find(|n| n[0] & 0x1f == 7);
            let pps = media::avc::annex_b_units(&e.data).find(|n| n[0] & 0x1f == 8);
            let (Some(sps), Some(pps)) = (sps, pps) else {
                return Err(Error::Encoder("the first frame has no SPS/PPS".into()));
            };
            packets.push(MediaPacket {
                kind: MediaKind::Video,
                dts_ms: 0,
                pts_ms: 0,
                keyframe: false,
                is_config: true,
                data: Bytes::from(avc_record(sps, pps)),
            });
        }
        packets.push(MediaPacket {
            kind: MediaKind::Video,
            dts_ms: e.dts_ms,
            pts_ms: e.pts_ms,
            keyframe: e.keyframe,
            is_config: false,
            data: Bytes::from(avcc),
        });
    }
    Ok(packets)
}

/// Four face boxes (relative), about 10 % of the frame height, as privacy-blur returns them.
pub fn four_faces() -> Vec<bus::Effect> {
    (0..4)
        .map(|i| bus::Effect {
            kind: "blur".into(),
            bbox: Some([0.1 + 0.2 * i as f32, 0.3, 0.06, 0.1]),
            params: [("radius".to_string(), 16.0), ("feather".to_string(), 8.0)]
                .into_iter()
                .collect(),
            component: "privacy-blur".into(),
        })
        .collect()
}

/// One measured row.
#[derive(Debug, Clone)]
pub struct Row {
    pub size: String,
    pub renderer: String,
    pub encoder: String,
    pub video_seconds: f64,
    /// CPU seconds per second of video.
    pub remux_cpu: f64,
    pub rendition_cpu: f64,
    /// Wall time of the rendition per frame (ms): the latency it adds beyond the wait for
    /// analysis.
    pub ms_per_frame: f64,
    pub segments: u64,
}

impl Row {
    /// Streams one core keeps an effects rendition of, in real time.
    pub fn streams_per_core(&self) -> f64 {
        1.0 / self.rendition_cpu.max(1e-9)
    }
}

fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Measures the effects rendition of `seconds` of `width`×`height` video at 30 frames/s.
pub fn cost(
    width: u32,
    height: u32,
    seconds: f64,
    device: effects::DevicePreference,
    encoder: EncoderChoice,
) -> Result<Row, Error> {
    let fps = 30;
    let packets = synthetic_stream(width, height, fps, seconds, fps * 2)?;
    let video_seconds = packets.len().saturating_sub(1) as f64 / fps as f64;

    // The original's path: every packet through the segmenter (bytes into segments).
    let remux = |taps: &Taps| {
        let mut segmenter = Segmenter::new(0, 2000, false);
        let mut configs = hls::tap::Configs::default();
        let mut bytes = 0usize;
        for p in &packets {
            if let Ok(Some(f)) = taps.push("bench", &mut segmenter, &mut configs, p, 0) {
                bytes += f.data.len();
            }
        }
        if let Some(f) = taps.finish("bench", &mut segmenter) {
            bytes += f.data.len();
        }
        bytes
    };
    let started = process_cpu();
    let rounds = 5;
    for _ in 0..rounds {
        std::hint::black_box(remux(&Taps::default()));
    }
    let remux_cpu = (process_cpu() - started).as_secs_f64() / rounds as f64 / video_seconds;

    // The rendition: the same packets through a tap, rendered and encoded.
    let dir = tempfile_dir()?;
    let taps = Taps::default();
    let tap = taps.open("bench", packets.len() + 64);
    remux(&taps);
    let timeline = Arc::new(Timeline::default());
    let faces = four_faces();
    let mut pts = 0;
    while pts <= (video_seconds * 1000.0) as i64 {
        timeline.push(AnalysedEffects {
            pts_ms: pts,
            width,
            height,
            effects: faces.clone(),
            complete: true,
            privacy: true,
        });
        pts += 200;
    }
    timeline.close();
    let stats = Arc::new(RenditionStats::default());
    let config = Arc::new(RenditionConfig {
        root: dir.clone(),
        device,
        encoder,
        // The whole stream is tapped at once: it is all "behind", and none of it is skipped.
        max_lag: Some(Duration::MAX),
        ..RenditionConfig::default()
    });
    let rendition = StreamRendition::new(
        "bench",
        config,
        tap,
        timeline,
        Arc::new(AtomicBool::new(false)),
        stats.clone(),
    );
    let renderer = effects::Renderer::open(device)
        .map(|r| r.describe())
        .unwrap_or_else(|_| "cpu".into());
    let wall = Instant::now();
    let cpu = process_cpu();
    let encoder_name = rendition.make()?.to_string();
    let rendition_cpu = (process_cpu() - cpu).as_secs_f64() / video_seconds;
    let wall = wall.elapsed();
    let frames = stats
        .frames_rendered
        .load(std::sync::atomic::Ordering::Relaxed)
        .max(1);
    let segments = stats.segments.load(std::sync::atomic::Ordering::Relaxed);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Row {
        size: format!("{width}×{height}"),
        renderer,
        encoder: encoder_name,
        video_seconds,
        remux_cpu,
        rendition_cpu,
        ms_per_frame: wall.as_secs_f64() * 1000.0 / frames as f64,
        segments,
    })
}

fn tempfile_dir() -> Result<std::path::PathBuf, Error> {
    let dir = std::env::temp_dir().join(format!(
        "media-analyzer-bench-rendition-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Measures 720p and 1080p and prints a row for each as it is measured.
pub fn table(
    seconds: f64,
    device: effects::DevicePreference,
    encoder: EncoderChoice,
) -> Result<Vec<Row>, String> {
    println!(
        "{:>10} {:<28} {:<11} {:>12} {:>14} {:>8} {:>14} {:>10}",
        "size",
        "renderer",
        "encoder",
        "remux cpu",
        "rendition cpu",
        "ratio",
        "streams/core",
        "ms/frame"
    );
    let mut rows = Vec::new();
    for (width, height) in [(1280, 720), (1920, 1080)] {
        let row = cost(width, height, seconds, device, encoder)
            .map_err(|e| format!("{width}×{height}: {e}"))?;
        println!(
            "{:>10} {:<28} {:<11} {:>11.4}% {:>13.1}% {:>7.0}x {:>14.2} {:>10.2}",
            row.size,
            row.renderer,
            row.encoder,
            row.remux_cpu * 100.0,
            row.rendition_cpu * 100.0,
            row.rendition_cpu / row.remux_cpu.max(1e-12),
            row.streams_per_core(),
            row.ms_per_frame,
        );
        rows.push(row);
    }
    println!("(cpu: CPU seconds per second of video, all threads; ratio: rendition over remux)");
    println!();
    handoff(seconds.clamp(1.0, 5.0));
    Ok(rows)
}

/// A decoded frame's way through the effects to the encoder on each GPU device this machine has
/// (four faces blurred): converted to RGB by libswscale as the decoder did, expanded to RGBA,
/// uploaded, read back as RGBA and converted by libswscale for the encoder (as before), against
/// the decoder's I420 uploaded as it is, converted on the device both ways
/// (shaders/from_yuv.wgsl, shaders/to_yuv.wgsl) and read back as YUV 4:2:0 into the encoder's
/// picture. x264 is left out.
pub fn handoff(seconds: f64) {
    println!(
        "{:<44} {:>10} {:>14} {:>14} {:>8} {:>16} {:>18}",
        "device",
        "size",
        "via rgb ms",
        "yuv both ms",
        "ratio",
        "cpu convert ms",
        "bytes up/back MB"
    );
    let budget = Duration::from_secs_f64(seconds.max(0.1));
    for kind in [effects::GpuKind::Hardware, effects::GpuKind::Software] {
        let mut gpu = match effects::Gpu::open(kind) {
            Ok(g) => g,
            Err(e) => {
                println!("({kind:?} device: {e})");
                continue;
            }
        };
        for (width, height) in [(1280, 720), (1920, 1080)] {
            let px = (width * height) as f64 / 1e6;
            match handoff_at(&mut gpu, width, height, budget) {
                Ok((via_rgb, yuv, converting)) => println!(
                    "{:<44} {:>10} {:>14.2} {:>14.2} {:>7.2}x {:>16.2} {:>18}",
                    gpu.describe(),
                    format!("{width}×{height}"),
                    via_rgb,
                    yuv,
                    via_rgb / yuv,
                    converting,
                    format!(
                        "{:.1}+{:.1} → {:.1}+{:.1}",
                        px * 4.0,
                        px * 4.0,
                        px * 1.5,
                        px * 1.5
                    ),
                ),
                Err(e) => println!("{} {width}×{height}: {e}", gpu.describe()),
            }
        }
    }
    println!(
        "(ms per frame, the two ways interleaved; ratio: via rgb over yuv both ways; cpu convert: \
         the CPU's share of the way via rgb, its three conversions, which yuv both ways leaves to \
         the device)"
    );
}

/// ms per frame of the two ways at one size, measured alternately, and of the CPU's conversions
/// on the way via RGB alone.
fn handoff_at(
    gpu: &mut effects::Gpu,
    width: u32,
    height: u32,
    budget: Duration,
) -> Result<(f64, f64, f64), Error> {
    use ffmpeg_next::software::scaling;
    use ffmpeg_next::util::format::Pixel;
    use ffmpeg_next::util::frame::Video;

    let picture = effects::bench::test_frame(width, height);
    let mut yuv = effects::Yuv420Frame::default();
    yuv.from_rgba(&picture)
        .map_err(|e| Error::Encoder(e.to_string()))?;
    let i420 = [&yuv.y[..], &yuv.u[..], &yuv.v[..]].concat();
    // The decoder's picture, and its conversion to RGB24 as the decoder made it.
    let mut decoded = Video::new(Pixel::YUV420P, width, height);
    crate::encode::write_planes(&mut decoded, width, [&yuv.y, &yuv.u, &yuv.v]);
    let mut to_rgb = scaling::Context::get(
        Pixel::YUV420P,
        width,
        height,
        Pixel::RGB24,
        width,
        height,
        scaling::Flags::BILINEAR,
    )
    .map_err(|e| Error::Decoder(e.to_string()))?;
    let mut rgb24 = Video::empty();
    let mut rgb = Vec::new();
    let workloads = effects::bench::workloads(width, height);
    let plan = effects::Plan::new(&workloads[0].1, width, height);
    let mut encoder = Encoder::open(EncoderChoice::X264, (width, height), (width, height), 30, 1)?;
    let mut work = picture.clone();
    let device = |e: effects::Error| Error::Encoder(e.to_string());
    // With `gpu`, the way via RGB; without, its CPU conversions alone.
    let mut via_rgb = |work: &mut effects::RgbaFrame,
                       gpu: Option<&mut effects::Gpu>,
                       encoder: &mut Encoder|
     -> Result<(), Error> {
        to_rgb
            .run(&decoded, &mut rgb24)
            .map_err(|e| Error::Decoder(e.to_string()))?;
        let (stride, row) = (rgb24.stride(0), width as usize * 3);
        rgb.clear();
        for y in 0..height as usize {
            rgb.extend_from_slice(&rgb24.data(0)[y * stride..y * stride + row]);
        }
        work.set_rgb(width, height, &rgb).map_err(device)?;
        if let Some(gpu) = gpu {
            gpu.render(work, &plan).map_err(device)?;
        }
        encoder.take_rgba(&work.pixels)
    };
    let mut out = effects::Yuv420Frame::default();
    // Warm-up: the first frame's allocations on either way.
    via_rgb(&mut work, Some(&mut *gpu), &mut encoder)?;
    gpu.render_i420(width, height, &i420, &plan, &mut out)
        .map_err(device)?;
    encoder.take_yuv(&out)?;
    let (mut before, mut after, mut converting) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut n = 0u32;
    while before + after < budget * 2 || n < 3 {
        let t = Instant::now();
        via_rgb(&mut work, Some(&mut *gpu), &mut encoder)?;
        before += t.elapsed();
        let t = Instant::now();
        via_rgb(&mut work, None, &mut encoder)?;
        converting += t.elapsed();
        let t = Instant::now();
        gpu.render_i420(width, height, &i420, &plan, &mut out)
            .map_err(device)?;
        encoder.take_yuv(&out)?;
        after += t.elapsed();
        n += 1;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0 / n as f64;
    Ok((ms(before), ms(after), ms(converting)))
}
