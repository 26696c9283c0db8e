//! `media-analyzer bench effects`: frames/s of each effect set at 720p and 1080p on every
//! renderer this machine has (hardware GPU, software Vulkan device, CPU), measured in one run,
//! with each renderer's ratio to the CPU implementation.

use std::time::{Duration, Instant};

use crate::{BlurStyle, Effect, Gpu, GpuKind, Grade, Plan, Region, Renderer, RgbaFrame};

/// One measured cell.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    pub renderer: String,
    pub size: String,
    pub effects: &'static str,
    pub frames: u32,
    pub frames_per_second: f64,
    pub ms_per_frame: f64,
}

/// A frame with texture everywhere (smooth gradients plus a fine pattern), as a camera gives.
pub fn test_frame(width: u32, height: u32) -> RgbaFrame {
    let mut px = Vec::with_capacity(width as usize * height as usize * 4);
    for y in 0..height {
        for x in 0..width {
            let fine = ((x * 7 + y * 13) % 32) as u8;
            px.extend_from_slice(&[
                (x * 255 / width) as u8 ^ fine,
                (y * 255 / height) as u8,
                ((x + y) % 256) as u8,
                255,
            ]);
        }
    }
    RgbaFrame {
        width,
        height,
        pixels: px,
    }
}

/// The workloads: privacy (4 faces blurred, each about 10 % of the frame height), spotlight (2
/// regions), a grade, all three at once, and the whole-frame cover a stalled effects rendition
/// renders, beside a Gaussian blur of the whole frame as strong.
pub fn workloads(width: u32, height: u32) -> Vec<(&'static str, Vec<Effect>)> {
    let (w, h) = (width as f32, height as f32);
    let face = |i: f32| Region {
        x: w * (0.1 + 0.2 * i),
        y: h * 0.3,
        w: h * 0.08,
        h: h * 0.1,
    };
    let blur = Effect::Blur {
        regions: (0..4).map(|i| face(i as f32)).collect(),
        style: BlurStyle::Gaussian {
            radius: (h * 0.02).round(),
        },
        feather: h * 0.01,
    };
    let highlight = Effect::Highlight {
        regions: vec![
            Region {
                x: w * 0.1,
                y: h * 0.6,
                w: w * 0.2,
                h: h * 0.2,
            },
            Region {
                x: w * 0.6,
                y: h * 0.1,
                w: w * 0.25,
                h: h * 0.15,
            },
        ],
        dim: 0.5,
        outline: 3.0,
        colour: [1.0, 0.8, 0.0, 1.0],
        feather: 12.0,
    };
    let grade = Effect::ColourGrade(Grade::look("warm").unwrap_or(Grade::NEUTRAL));
    // As the bundled privacy-blur chooses: radius half the face's smaller side, feather half that.
    let privacy = Effect::Blur {
        regions: (0..4).map(|i| face(i as f32)).collect(),
        style: BlurStyle::Gaussian {
            radius: (h * 0.04).round(),
        },
        feather: h * 0.02,
    };
    vec![
        ("face blur ×4", vec![blur.clone()]),
        ("privacy-blur ×4", vec![privacy]),
        ("highlight ×2", vec![highlight.clone()]),
        ("colour grade", vec![grade.clone()]),
        ("all three", vec![grade, highlight, blur]),
        ("whole-frame cover", vec![Effect::cover(width, height)]),
        (
            "whole-frame blur r64",
            vec![Effect::Blur {
                regions: vec![Region {
                    x: 0.0,
                    y: 0.0,
                    w,
                    h,
                }],
                style: BlurStyle::Gaussian { radius: 64.0 },
                feather: 0.0,
            }],
        ),
    ]
}

fn measure(
    renderer: &mut Renderer,
    frame: &RgbaFrame,
    plan: &Plan,
    budget: Duration,
) -> (u32, f64) {
    let mut work = frame.clone();
    // Warm-up: first-frame allocations and pipeline compiles.
    let _ = renderer.render_plan(&mut work, plan);
    let started = Instant::now();
    let mut n = 0u32;
    while started.elapsed() < budget || n < 3 {
        work.pixels.copy_from_slice(&frame.pixels);
        if let Err(e) = renderer.render_plan(&mut work, plan) {
            tracing::warn!("{e}");
            break;
        }
        n += 1;
    }
    (n, started.elapsed().as_secs_f64())
}

/// Runs every workload at each size on each renderer found, `seconds` per cell; prints a table
/// and returns the rows.
pub fn effects(sizes: &[(u32, u32)], seconds: f64) -> Vec<Row> {
    let mut renderers: Vec<Renderer> = Vec::new();
    for kind in [GpuKind::Hardware, GpuKind::Software] {
        match Gpu::open(kind) {
            Ok(g) => renderers.push(Renderer::Gpu(Box::new(g))),
            Err(e) => println!("({kind:?} device: {e})"),
        }
    }
    renderers.push(Renderer::Cpu(crate::Cpu::default()));
    let budget = Duration::from_secs_f64(seconds.max(0.1));
    let mut rows = Vec::new();
    println!(
        "{:<44} {:>10} {:<14} {:>8} {:>9} {:>8}",
        "renderer", "size", "effects", "frames/s", "ms/frame", "vs cpu"
    );
    for &(width, height) in sizes {
        let frame = test_frame(width, height);
        for (name, effects) in workloads(width, height) {
            let plan = Plan::new(&effects, width, height);
            let mut cells = Vec::new();
            for r in renderers.iter_mut() {
                let (n, secs) = measure(r, &frame, &plan, budget);
                cells.push((r.describe(), n, secs));
            }
            let cpu_fps = cells
                .last()
                .map(|(_, n, s)| *n as f64 / s)
                .unwrap_or(f64::NAN);
            for (renderer, n, secs) in cells {
                let fps = n as f64 / secs;
                println!(
                    "{:<44} {:>10} {:<14} {:>8.1} {:>9.2} {:>7.2}x",
                    renderer,
                    format!("{width}×{height}"),
                    name,
                    fps,
                    1000.0 / fps,
                    fps / cpu_fps
                );
                rows.push(Row {
                    renderer,
                    size: format!("{width}×{height}"),
                    effects: name,
                    frames: n,
                    frames_per_second: fps,
                    ms_per_frame: 1000.0 / fps,
                });
            }
        }
    }
    rows
}
