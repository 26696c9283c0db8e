//! `media-analyzer bench analysis`: the same detector model on the same frames, through the Wasm
//! component (host-prepared tensor, wasi-nn, decode + NMS in the sandbox) and natively from
//! Rust (prepare → ONNX Runtime → the same decode crate), in one run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use inference::{Catalog, ChannelOrder, Layout, Model, Resize, SessionOptions, Tensor, TensorSpec};
use runtime::{ModelRegistry, Runtime, SandboxConfig};

fn stats(samples: &mut [Duration]) -> (f64, f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = samples.iter().map(|d| ms(*d)).sum::<f64>() / samples.len().max(1) as f64;
    let p = |q: f64| ms(samples[((samples.len() as f64 - 1.0) * q).round() as usize]);
    (mean, p(0.5), p(0.99))
}

/// 300 frames (10 s at 30 fps, 1280×720) made from the coffee fixture with the ffmpeg CLI.
fn frames(catalog: &Catalog, count: usize, work: &Path) -> anyhow::Result<Vec<decode::Frame>> {
    let photo = catalog
        .fixture_path("coffee")
        .context("the coffee fixture is missing: run scripts/fetch-models")?;
    let clip = work.join("bench-analysis.mp4");
    clip_from_photo(&photo, "1280:720", count, &clip)?;
    let mut source = decode::FileSource::open(clip.to_str().unwrap_or_default(), 2)?;
    let mut all = Vec::new();
    let mut batch = Vec::new();
    while all.len() < count && source.next_frames(&mut batch)? {
        all.append(&mut batch);
    }
    all.truncate(count);
    Ok(all)
}

/// A 30 fps H.264 clip of `frames` frames showing `photo` scaled to `size` (`W:H`), made with the
/// ffmpeg CLI.
pub fn clip_from_photo(photo: &Path, size: &str, frames: usize, out: &Path) -> anyhow::Result<()> {
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-loop",
            "1",
            "-i",
        ])
        .arg(photo)
        .args([
            "-vf",
            &format!("scale={size},format=yuv420p"),
            "-r",
            "30",
            "-frames:v",
            &frames.to_string(),
        ])
        .args(["-c:v", "libx264", "-preset", "veryfast"])
        .arg(out)
        .status()
        .context("running ffmpeg (scripts/setup installs it)")?;
    if !status.success() {
        bail!("ffmpeg could not make a clip from {}", photo.display());
    }
    Ok(())
}

pub fn analysis(count: usize, components: &Path) -> anyhow::Result<()> {
    let catalog = Catalog::load(&Catalog::default_path())?;
    inference::init_onnxruntime(&catalog.onnxruntime_library())?;
    let model = Model::load(
        "nanodet-coco",
        &catalog.model_path("nanodet-coco")?,
        &SessionOptions::default(),
    )?;
    let work = tempfile_dir()?;
    let frames = frames(&catalog, count, &work)?;
    eprintln!(
        "{} frames of {}×{}",
        frames.len(),
        frames[0].width,
        frames[0].height
    );

    // Native: prepare → ORT → decode + NMS, all in Rust.
    let spec = TensorSpec {
        width: 416,
        height: 416,
        layout: Layout::Nchw,
        channels: ChannelOrder::Bgr,
        resize: Resize::Stretch,
        mean: postprocess::nanodet::MEAN_BGR,
        std: postprocess::nanodet::STD_BGR,
    };
    let mut native = Vec::with_capacity(frames.len());
    let mut native_inference = Vec::with_capacity(frames.len());
    let mut native_found = 0;
    for f in &frames {
        let started = Instant::now();
        let mut data = Vec::new();
        inference::prepare(&f.rgb, f.width, f.height, &spec, &mut data)?;
        let out = model.run_blocking(vec![Tensor::f32("input", vec![1, 3, 416, 416], data)])?;
        let get = |name: &str| {
            out.outputs
                .iter()
                .find(|t| t.name == name)
                .and_then(|t| t.data.as_f32())
                .unwrap_or(&[])
        };
        let levels: Vec<postprocess::nanodet::Level> = postprocess::nanodet::STRIDES
            .iter()
            .map(|&s| postprocess::nanodet::Level {
                stride: s,
                cls: get(&format!("cls_{s}")),
                boxes: get(&format!("box_{s}")),
            })
            .collect();
        native_found += postprocess::nanodet::decode(&levels, 0.35, 0.5)
            .map(|d| d.len())
            .unwrap_or(0);
        native.push(started.elapsed());
        native_inference.push(out.compute);
    }

    // Component: the object-detector component in a fresh pooled instance per frame.
    let rt = Runtime::new(
        SandboxConfig::default(),
        ModelRegistry::from([("nanodet-coco".to_string(), model)]),
    )?;
    let path = components.join("object_detector.wasm");
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "{}: build components with scripts/build-components",
            path.display()
        )
    })?;
    let compile_started = Instant::now();
    let detector = rt.load_detector(&bytes)?;
    let compile = compile_started.elapsed();
    let mut component = Vec::with_capacity(frames.len());
    let mut component_inference = Vec::with_capacity(frames.len());
    let mut component_found = 0;
    for f in &frames {
        let frame = runtime_wit::Frame {
            stream: "bench".into(),
            seq: f.seq,
            pts_ms: f.pts_ms,
            width: f.width,
            height: f.height,
            rgb: Arc::clone(&f.rgb),
        };
        let outcome = rt.detect(&detector, frame, &[])?;
        component_found += outcome.detections.len();
        component.push(outcome.elapsed);
        component_inference.push(outcome.inference);
    }
    let mut instantiate: Vec<Duration> = (0..100)
        .map(|_| rt.instantiate_detector(&detector))
        .collect::<Result<_, _>>()?;

    let (n_mean, n_p50, n_p99) = stats(&mut native);
    let (c_mean, c_p50, c_p99) = stats(&mut component);
    let (ni_mean, ..) = stats(&mut native_inference);
    let (ci_mean, ..) = stats(&mut component_inference);
    let (inst_mean, inst_p50, _) = stats(&mut instantiate);
    println!(
        "\nNanoDet-m 416×416 on {} frames (1280×720), ONNX Runtime 1 intra-op thread\n",
        frames.len()
    );
    println!(
        "| path | per frame mean (ms) | p50 (ms) | p99 (ms) | of which model (ms) | detections |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| native Rust (prepare → ORT → decode) | {n_mean:.2} | {n_p50:.2} | {n_p99:.2} | {ni_mean:.2} | {native_found} |"
    );
    println!(
        "| Wasm component (frame.tensor → wasi-nn → decode in sandbox) | {c_mean:.2} | {c_p50:.2} | {c_p99:.2} | {ci_mean:.2} | {component_found} |"
    );
    println!();
    println!(
        "component / native per frame: {:.3}× (mean), {:.3}× (p50)",
        c_mean / n_mean,
        c_p50 / n_p50
    );
    println!(
        "instantiation per call (pooling, InstancePre): mean {:.3} ms, p50 {:.3} ms",
        inst_mean, inst_p50
    );
    println!(
        "component compile (Cranelift, first load): {:.1} ms",
        compile.as_secs_f64() * 1000.0
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// clip-brands through the sandbox vs. the same steps natively: build the tokenizer, tokenise 16
/// prompts, prepare the frame's centre square (224×224), one CLIP call with both towers, softmax.
/// Uses the user's `clip` model when registered, else the generated `clip-test` (whose compute is
/// negligible, so the ratio then shows the per-call overhead of the component path).
pub fn clip(calls: usize, components: &Path) -> anyhow::Result<()> {
    let catalog = Catalog::load(&Catalog::default_path())?;
    inference::init_onnxruntime(&catalog.onnxruntime_library())?;
    let name = if catalog.model("clip").is_ok() {
        "clip"
    } else {
        "clip-test"
    };
    let model = Model::load(name, &catalog.model_path(name)?, &SessionOptions::default())?;
    let vocab_path = catalog
        .tokenizer_path("clip-bpe")
        .context("the CLIP vocabulary is missing: run scripts/fetch-models")?;
    let vocabulary = std::fs::read_to_string(&vocab_path)?;
    let work = tempfile_dir()?;
    let frame = frames(&catalog, 1, &work)?.remove(0);
    // The prompts clip-brands makes by default: its brands and "none of these" (16 prompts).
    let prompts: Vec<String> = postprocess::clip::DEFAULT_BRANDS
        .split(',')
        .map(|b| format!("a photo of {b}."))
        .chain(
            postprocess::clip::DEFAULT_OTHERS
                .split('|')
                .map(str::to_string),
        )
        .collect();
    let size = postprocess::clip::IMAGE_SIZE;
    let spec = TensorSpec {
        width: size,
        height: size,
        layout: Layout::Nchw,
        channels: ChannelOrder::Rgb,
        resize: Resize::Stretch,
        mean: postprocess::clip::MEAN_RGB,
        std: postprocess::clip::STD_RGB,
    };
    let side = frame.width.min(frame.height);
    let (x0, y0) = ((frame.width - side) / 2, (frame.height - side) / 2);

    // A native host builds the tokenizer once; the component embeds a pre-sorted merge table.
    let built = Instant::now();
    let tokenizer = postprocess::clip::Tokenizer::new(&vocabulary).map_err(anyhow::Error::msg)?;
    let tokenizer_build = built.elapsed();
    let mut native = Vec::with_capacity(calls);
    let mut native_best = String::new();
    for _ in 0..calls {
        let started = Instant::now();
        let batch = tokenizer.batch(&prompts);
        let mut square = Vec::with_capacity((side * side * 3) as usize);
        for y in y0..y0 + side {
            let row = ((y * frame.width + x0) * 3) as usize;
            square.extend_from_slice(&frame.rgb[row..row + (side * 3) as usize]);
        }
        let mut pixels = Vec::new();
        inference::prepare(&square, side, side, &spec, &mut pixels)?;
        let shape = vec![prompts.len() as i64, postprocess::clip::CONTEXT as i64];
        let out = model.run_blocking(vec![
            Tensor::f32("pixel_values", vec![1, 3, size as i64, size as i64], pixels),
            Tensor::i64("input_ids", shape.clone(), batch.ids),
            Tensor::i64("attention_mask", shape, batch.mask),
        ])?;
        let get = |n: &str| {
            out.outputs
                .iter()
                .find(|t| t.name == n)
                .and_then(|t| t.data.as_f32())
                .unwrap_or(&[])
        };
        let p = postprocess::clip::zero_shot(get("image_embeds"), get("text_embeds"), 100.0);
        let best = p
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap_or(0);
        native_best = prompts[best].clone();
        native.push(started.elapsed());
    }

    let rt = Runtime::new(
        SandboxConfig::default(),
        ModelRegistry::from([(name.to_string(), model)]),
    )?;
    let path = components.join("clip_brands.wasm");
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "{}: build components with scripts/build-components",
            path.display()
        )
    })?;
    let detector = rt.load_detector(&bytes)?;
    let settings = [
        ("model".to_string(), name.to_string()),
        ("min-score".to_string(), "0".to_string()),
    ];
    let mut component = Vec::with_capacity(calls);
    let mut component_inference = Vec::with_capacity(calls);
    for _ in 0..calls {
        let host_frame = runtime_wit::Frame {
            stream: "bench".into(),
            seq: frame.seq,
            pts_ms: frame.pts_ms,
            width: frame.width,
            height: frame.height,
            rgb: Arc::clone(&frame.rgb),
        };
        let outcome = rt.detect(&detector, host_frame, &settings)?;
        component.push(outcome.elapsed);
        component_inference.push(outcome.inference);
    }
    let (n_mean, n_p50, n_p99) = stats(&mut native);
    let (c_mean, c_p50, c_p99) = stats(&mut component);
    let (ci_mean, ..) = stats(&mut component_inference);
    println!(
        "\nclip-brands with model '{name}', {} prompts, {calls} calls on a {}×{} frame\n",
        prompts.len(),
        frame.width,
        frame.height
    );
    println!("| path | per call mean (ms) | p50 (ms) | p99 (ms) |");
    println!("|---|---|---|---|");
    println!(
        "| native Rust (tokenizer → prepare → ORT → softmax) | {n_mean:.2} | {n_p50:.2} | {n_p99:.2} |"
    );
    println!(
        "| Wasm component (same steps in the sandbox) | {c_mean:.2} | {c_p50:.2} | {c_p99:.2} |"
    );
    println!();
    println!(
        "component / native per call: {:.2}× (mean), {:.2}× (p50)",
        c_mean / n_mean,
        c_p50 / n_p50
    );
    println!(
        "tokenizer built once natively: {:.2} ms (not in the native per-call time); model in the component path: {ci_mean:.2} ms",
        tokenizer_build.as_secs_f64() * 1000.0
    );
    println!("native winner: {native_best}");
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("media-analyzer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
