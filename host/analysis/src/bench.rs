//! `media-analyzer bench analysis`: the same detector model on the same frames, through the Wasm
//! component (host-prepared tensor, wasi-nn, decode + NMS in the sandbox) and natively from
//! Rust (prepare → ONNX Runtime → the same decode crate), in one run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use inference::{Catalog, ChannelOrder, Layout, Model, Resize, SessionOptions, Tensor, TensorSpec};
use runtime::{ModelRegistry, Runtime, SandboxConfig};

use crate::frame::host_frame;

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

/// Per-frame wall time and model time of one path, and what it found.
#[derive(Default)]
struct Measured {
    per_frame: Vec<Duration>,
    model: Vec<Duration>,
    found: usize,
}

impl Measured {
    fn row(&mut self, path: &str) -> (f64, f64) {
        let (mean, p50, p99) = stats(&mut self.per_frame);
        let (model, ..) = stats(&mut self.model);
        println!(
            "| {path} | {mean:.2} | {p50:.2} | {p99:.2} | {model:.2} | {} |",
            self.found
        );
        (mean, p50)
    }
}

/// Each frame natively and through the component, interleaved (which goes first alternates), so
/// a drift of the machine's speed during the run touches both paths alike. `native` prepares,
/// runs the model and decodes, returning what it found and the model's time; the component runs
/// in a fresh pooled instance per frame.
fn paired_runs(
    frames: &[decode::Frame],
    native: impl Fn(&decode::Frame) -> anyhow::Result<(usize, Duration)>,
    rt: &Runtime,
    detector: &runtime::DetectorComponent,
    config: &[(String, String)],
) -> anyhow::Result<(Measured, Measured)> {
    let (mut n, mut c) = (Measured::default(), Measured::default());
    let run_native = |f: &decode::Frame, m: &mut Measured| -> anyhow::Result<()> {
        let started = Instant::now();
        let (found, model) = native(f)?;
        m.per_frame.push(started.elapsed());
        m.model.push(model);
        m.found += found;
        Ok(())
    };
    let run_component = |f: &decode::Frame, m: &mut Measured| -> anyhow::Result<()> {
        let outcome = rt.detect(detector, host_frame("bench", f), config)?;
        m.found += outcome.detections.len();
        m.per_frame.push(outcome.elapsed);
        m.model.push(outcome.inference);
        Ok(())
    };
    for (i, f) in frames.iter().enumerate() {
        if i % 2 == 0 {
            run_native(f, &mut n)?;
            run_component(f, &mut c)?;
        } else {
            run_component(f, &mut c)?;
            run_native(f, &mut n)?;
        }
    }
    Ok((n, c))
}

/// The paths' time outside the model, per frame: what the component path adds is the difference.
fn outside_model(m: &Measured) -> f64 {
    let ms = |v: &[Duration]| {
        v.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0 / v.len().max(1) as f64
    };
    ms(&m.per_frame) - ms(&m.model)
}

/// Prints one model's table and its ratios.
fn report(title: &str, component_path: &str, native: &mut Measured, component: &mut Measured) {
    let (fixed_n, fixed_c) = (outside_model(native), outside_model(component));
    println!("\n{title}\n");
    println!(
        "| path | per frame mean (ms) | p50 (ms) | p99 (ms) | of which model (ms) | detections |"
    );
    println!("|---|---|---|---|---|---|");
    let (n_mean, n_p50) = native.row("native Rust (prepare → ORT → decode)");
    let (c_mean, c_p50) = component.row(component_path);
    let (model, ..) = stats(&mut native.model);
    println!(
        "\ncomponent / native per frame: {:.3}× (mean), {:.3}× (p50)",
        c_mean / n_mean,
        c_p50 / n_p50
    );
    println!(
        "outside the model: native {fixed_n:.2} ms, component {fixed_c:.2} ms → fixed cost of the component path {:.2} ms per call; \
         with the same model time ({model:.2} ms): {:.3}×",
        fixed_c - fixed_n,
        (model + fixed_c) / (model + fixed_n)
    );
}

/// A built component's bytes (`file` in `components`).
pub(crate) fn component_bytes(components: &Path, file: &str) -> anyhow::Result<Vec<u8>> {
    let path = components.join(file);
    std::fs::read(&path).with_context(|| {
        format!(
            "{}: build components with scripts/build-components",
            path.display()
        )
    })
}

fn load_component(
    rt: &Runtime,
    components: &Path,
    file: &str,
) -> anyhow::Result<(runtime::DetectorComponent, Duration)> {
    let bytes = component_bytes(components, file)?;
    let started = Instant::now();
    let detector = rt.load_detector(&bytes)?;
    Ok((detector, started.elapsed()))
}

/// The NanoDet input, as the object-detector component asks for it.
const NANODET_SPEC: TensorSpec = TensorSpec {
    width: 416,
    height: 416,
    layout: Layout::Nchw,
    channels: ChannelOrder::Bgr,
    resize: Resize::Stretch,
    mean: postprocess::nanodet::MEAN_BGR,
    std: postprocess::nanodet::STD_BGR,
};

/// The BlazeFace input, as the face-detector component asks for it.
const BLAZEFACE_SPEC: TensorSpec = TensorSpec {
    width: 128,
    height: 128,
    layout: Layout::Nhwc,
    channels: ChannelOrder::Rgb,
    resize: Resize::Letterbox { pad: 128 },
    mean: [127.5, 127.5, 127.5],
    std: [127.5, 127.5, 127.5],
};

fn output<'a>(out: &'a inference::RunOutput, name: &str) -> &'a [f32] {
    out.outputs
        .iter()
        .find(|t| t.name == name)
        .and_then(|t| t.data.as_f32())
        .unwrap_or(&[])
}

pub fn analysis(count: usize, components: &Path) -> anyhow::Result<()> {
    let catalog = Catalog::load(&Catalog::default_path())?;
    inference::init_onnxruntime(&catalog.onnxruntime_library())?;
    let load =
        |name: &str| Model::load(name, &catalog.model_path(name)?, &SessionOptions::default());
    let (nanodet, blazeface) = (load("nanodet-coco")?, load("blazeface")?);
    let work = tempfile_dir()?;
    let frames = frames(&catalog, count, &work)?;
    eprintln!(
        "{} frames of {}×{}",
        frames.len(),
        frames[0].width,
        frames[0].height
    );

    let rt = Runtime::new(
        SandboxConfig::default(),
        ModelRegistry::from([
            ("nanodet-coco".to_string(), nanodet.clone()),
            ("blazeface".to_string(), blazeface.clone()),
        ]),
    )?;
    let (objects, compile) = load_component(&rt, components, "object_detector.wasm")?;
    let (faces, _) = load_component(&rt, components, "face_detector.wasm")?;

    // Native: prepare → ORT → decode + NMS, all in Rust.
    let (mut native_nanodet, mut component_nanodet) = paired_runs(
        &frames,
        |f| {
            let mut data = Vec::new();
            inference::prepare(&f.rgb, f.width, f.height, &NANODET_SPEC, &mut data)?;
            let out =
                nanodet.run_blocking(vec![Tensor::f32("input", vec![1, 3, 416, 416], data)])?;
            let levels: Vec<postprocess::nanodet::Level> = postprocess::nanodet::STRIDES
                .iter()
                .map(|&s| postprocess::nanodet::Level {
                    stride: s,
                    cls: output(&out, &format!("cls_{s}")),
                    boxes: output(&out, &format!("box_{s}")),
                })
                .collect();
            let found = postprocess::nanodet::decode(&levels, 0.35, 0.5)
                .map(|d| d.len())
                .unwrap_or(0);
            Ok((found, out.compute))
        },
        &rt,
        &objects,
        &[],
    )?;
    let (mut native_blazeface, mut component_blazeface) = paired_runs(
        &frames,
        |f| {
            let mut data = Vec::new();
            inference::prepare(&f.rgb, f.width, f.height, &BLAZEFACE_SPEC, &mut data)?;
            let out =
                blazeface.run_blocking(vec![Tensor::f32("input:0", vec![1, 128, 128, 3], data)])?;
            let levels = [
                postprocess::blazeface::Level {
                    cells: 16,
                    anchors: 2,
                    scores: output(&out, "Identity:0"),
                    boxes: output(&out, "Identity_2:0"),
                },
                postprocess::blazeface::Level {
                    cells: 8,
                    anchors: 6,
                    scores: output(&out, "Identity_1:0"),
                    boxes: output(&out, "Identity_3:0"),
                },
            ];
            let found =
                postprocess::blazeface::decode(&levels, postprocess::blazeface::INPUT, 0.5, 0.3)
                    .map(|d| d.len())
                    .unwrap_or(0);
            Ok((found, out.compute))
        },
        &rt,
        &faces,
        // The same single run as the native path (the full range adds tiles and confirmations:
        // `bench faces`).
        &[("range".to_string(), "close".to_string())],
    )?;
    let mut instantiate: Vec<Duration> = (0..100)
        .map(|_| rt.instantiate_detector(&objects))
        .collect::<Result<_, _>>()?;
    let (inst_mean, inst_p50, _) = stats(&mut instantiate);

    report(
        &format!(
            "NanoDet-m 416×416 on {} frames ({}×{}), ONNX Runtime 1 intra-op thread",
            frames.len(),
            frames[0].width,
            frames[0].height
        ),
        "Wasm component (frame.tensor → wasi-nn → rows above threshold → decode in sandbox)",
        &mut native_nanodet,
        &mut component_nanodet,
    );
    report(
        "BlazeFace 128×128 (a fast model), same frames",
        "Wasm component, range close (frame.tensor → wasi-nn → decode in sandbox)",
        &mut native_blazeface,
        &mut component_blazeface,
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
        let outcome = rt.detect(&detector, host_frame("bench", &frame), &settings)?;
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
