//! `media-analyzer bench tenants`: what each tenant with its own active component costs one host.
//!
//! `N` tenants each upload their own build of a detector (the SDK example with a custom section
//! naming the tenant: different bytes, so nothing is shared but the engine), and run it:
//! - compile on upload (a compile-cache miss) and load on activation (a hit), per tenant;
//! - memory per tenant: the process's resident memory over the compiled components, and the
//!   compile cache's own count of code bytes;
//! - instantiation per call (the pooling allocator), against the whole call on a 640×360 frame;
//! - fairness: one stream per tenant, all analysing at once for `seconds` through the same
//!   [`inference::FairShare`] turns as live analysis: frames per stream, min/max, and Jain's index
//!   (1.0 = every stream got the same share).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use runtime::{ModelRegistry, Runtime, SandboxConfig};

/// The process's resident memory, bytes (Linux).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// `component` with a custom section naming the tenant appended: another tenant's build.
fn tenant_build(component: &[u8], tenant: usize) -> Vec<u8> {
    let leb = |v: usize, out: &mut Vec<u8>| inference::onnx_check::put_varint(v as u64, out);
    let (name, payload) = (b"tenant", format!("tenant-{tenant:04}"));
    let mut section = Vec::new();
    leb(name.len(), &mut section);
    section.extend_from_slice(name);
    section.extend_from_slice(payload.as_bytes());
    let mut out = component.to_vec();
    out.push(0); // custom section
    leb(section.len(), &mut out);
    out.extend_from_slice(&section);
    out
}

fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * q).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A 640×360 frame: left half brand red, right half white (what the example looks for).
fn frame(stream: usize) -> runtime_wit::Frame {
    let (w, h) = (640u32, 360u32);
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for _ in 0..h {
        for x in 0..w {
            rgb.extend_from_slice(if x < w / 2 {
                &[0xE4, 0x1E, 0x2B]
            } else {
                &[255, 255, 255]
            });
        }
    }
    runtime_wit::Frame {
        stream: format!("str_{stream:04}"),
        seq: 0,
        pts_ms: 0,
        width: w,
        height: h,
        rgb: Arc::new(rgb),
    }
}

pub fn tenants(count: usize, seconds: u64, components: &Path) -> anyhow::Result<()> {
    let count = count.max(1);
    let example = crate::bench::component_bytes(components, "brand_colour.wasm")?;
    let builds: Vec<Vec<u8>> = (0..count).map(|t| tenant_build(&example, t)).collect();
    let config = SandboxConfig {
        // Every tenant's code stays compiled (the default cache holds 256 MiB).
        compile_cache_bytes: SandboxConfig::default().compile_cache_bytes.max(1 << 30),
        ..SandboxConfig::default()
    };
    let runtime = Runtime::new(config, ModelRegistry::new())?;
    // Warm the engine (first compile pays one-time set-up), then measure from here.
    runtime.load_detector(&example)?;
    let before = resident_bytes();
    let cache_before = runtime.compile_cache();

    let mut compiles = Vec::with_capacity(count);
    let mut detectors = Vec::with_capacity(count);
    for bytes in &builds {
        let started = Instant::now();
        detectors.push(runtime.load_detector(bytes)?);
        compiles.push(started.elapsed());
    }
    let after = resident_bytes();
    let cache = runtime.compile_cache();
    let mut hits = Vec::with_capacity(count);
    for bytes in &builds {
        let started = Instant::now();
        runtime.load_detector(bytes)?;
        hits.push(started.elapsed());
    }
    anyhow::ensure!(
        runtime.compile_cache().hits >= cache.hits + count as u64,
        "the second loads were not compile-cache hits"
    );

    // Round robin over the tenants (as their streams' frames arrive), and one tenant's component
    // back to back (its instance slot still warm).
    let mut instantiations = Vec::with_capacity(count * 20);
    for _ in 0..20 {
        for detector in &detectors {
            instantiations.push(runtime.instantiate_detector(detector)?);
        }
    }
    let mut warm = Vec::with_capacity(count * 20);
    for _ in 0..count * 20 {
        warm.push(runtime.instantiate_detector(&detectors[0])?);
    }
    let config = vec![("colour".to_string(), "#E41E2B".to_string())];
    let mut calls = Vec::with_capacity(count * 5);
    for _ in 0..5 {
        for (t, detector) in detectors.iter().enumerate() {
            let outcome = runtime.detect(detector, frame(t), &config)?;
            anyhow::ensure!(
                outcome.detections.len() == 1,
                "the example found {} regions, not the one red half",
                outcome.detections.len()
            );
            calls.push(outcome.elapsed);
        }
    }

    // Fairness: one analyser thread per stream, turns shared as in live analysis.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let fair = Arc::new(inference::FairShare::new(workers));
    let (runtime, stop) = (Arc::new(runtime), Arc::new(AtomicBool::new(false)));
    let threads: Vec<_> = detectors
        .into_iter()
        .enumerate()
        .map(|(t, detector)| {
            let (runtime, fair, stop, config) =
                (runtime.clone(), fair.clone(), stop.clone(), config.clone());
            std::thread::spawn(move || {
                let (frame, stream) = (frame(t), format!("str_{t:04}"));
                let mut frames = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let Some(_turn) = fair.turn(&stream, Duration::from_millis(200)) else {
                        continue;
                    };
                    if runtime.detect(&detector, frame.clone(), &config).is_ok() {
                        frames += 1;
                    }
                }
                frames
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let frames: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap_or(0)).collect();
    let total: u64 = frames.iter().sum();
    let (min, max) = (
        frames.iter().copied().min().unwrap_or(0),
        frames.iter().copied().max().unwrap_or(0),
    );
    let squares: f64 = frames.iter().map(|&f| (f as f64).powi(2)).sum();
    let jain = (total as f64).powi(2) / (count as f64 * squares.max(1.0));

    let per_tenant = |bytes: u64| bytes as f64 / count as f64 / 1024.0;
    println!(
        "tenants: {count}, each with its own build of the SDK example ({} bytes)",
        example.len()
    );
    println!(
        "compile on upload (cache miss): p50 {:.1} ms, p99 {:.1} ms",
        us(percentile(&mut compiles, 0.5)) / 1000.0,
        us(percentile(&mut compiles, 0.99)) / 1000.0
    );
    let hit = percentile(&mut hits, 0.5);
    println!(
        "load on activation (cache hit): p50 {:.1} µs, p99 {:.1} µs — {:.0}× cheaper than compiling",
        us(hit),
        us(percentile(&mut hits, 0.99)),
        us(percentile(&mut compiles, 0.5)) / us(hit).max(0.001)
    );
    println!(
        "memory per tenant: {:.0} KiB resident, of which {:.0} KiB compiled code (cache: {} entries)",
        per_tenant(after.saturating_sub(before)),
        per_tenant((cache.bytes - cache_before.bytes) as u64),
        cache.entries
    );
    let (inst, call) = (
        percentile(&mut instantiations, 0.5),
        percentile(&mut calls, 0.5),
    );
    println!(
        "instantiation per call, round robin over the tenants: p50 {:.1} µs, p99 {:.1} µs (one tenant back to back: p50 {:.1} µs; target < 50 µs); {:.1}% of a whole call on a 640×360 frame (p50 {:.0} µs)",
        us(inst),
        us(percentile(&mut instantiations, 0.99)),
        us(percentile(&mut warm, 0.5)),
        100.0 * us(inst) / us(call).max(0.001),
        us(call)
    );
    println!(
        "fairness over {seconds} s, {count} streams on {workers} turns: {:.1} frames/s per stream (min {:.1}, max {:.1}), Jain's index {jain:.3}, {:.0} frames/s in all",
        total as f64 / count as f64 / seconds as f64,
        min as f64 / seconds as f64,
        max as f64 / seconds as f64,
        total as f64 / seconds as f64
    );
    Ok(())
}
