//! Golden images per shader, on real photos (the scikit-image fixtures that scripts/fetch-models
//! verifies by sha256): the software wgpu device (Mesa lavapipe) and the CPU implementation each
//! within a PSNR bound of the other and of a committed reference PNG, and pixels away from the
//! regions untouched.
//!
//! `MEDIA_ANALYZER_UPDATE_GOLDEN=1 cargo test -p effects --test golden` rewrites the references
//! from the software device's output.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use effects::{BlurStyle, Effect, Gpu, GpuKind, Grade, Region, Renderer, RgbaFrame, psnr};

/// Two renderers of the same arithmetic, rounding apart: 1 level everywhere would be 48 dB.
const SAME_DB: f64 = 42.0;

fn fixture(name: &str) -> RgbaFrame {
    let cache = std::env::var_os("MEDIA_ANALYZER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/media-analyzer")
        });
    let path = cache.join("fixtures").join(format!("{name}.png"));
    let img = image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch-models)", path.display()))
        .to_rgba8();
    // Half size: small references, same content.
    let img = image::imageops::resize(
        &img,
        img.width() / 2,
        img.height() / 2,
        image::imageops::FilterType::Triangle,
    );
    RgbaFrame::new(img.width(), img.height(), img.into_raw()).unwrap()
}

fn software() -> &'static Mutex<Gpu> {
    static GPU: OnceLock<Mutex<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| {
        Mutex::new(Gpu::open(GpuKind::Software).unwrap_or_else(|e| {
            panic!(
                "{e}: the golden tests need the software Vulkan device (scripts/setup installs it)"
            )
        }))
    })
}

/// Renders on both, compares both with each other and with the reference; returns the output.
fn golden(name: &str, input: &RgbaFrame, effects: &[Effect]) -> RgbaFrame {
    let mut on_cpu = input.clone();
    Renderer::open(effects::DevicePreference::Cpu)
        .unwrap()
        .render(&mut on_cpu, effects)
        .unwrap();
    let mut on_gpu = input.clone();
    let plan = effects::Plan::new(effects, input.width, input.height);
    software()
        .lock()
        .unwrap()
        .render(&mut on_gpu, &plan)
        .unwrap();
    let between = psnr(&on_cpu, &on_gpu);
    eprintln!("{name}: cpu vs software device {between:.1} dB");
    assert!(
        between >= SAME_DB,
        "{name}: cpu vs software device {between:.1} dB"
    );

    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.png"));
    if std::env::var_os("MEDIA_ANALYZER_UPDATE_GOLDEN").is_some() {
        image::RgbaImage::from_raw(on_gpu.width, on_gpu.height, on_gpu.pixels.clone())
            .unwrap()
            .save(&path)
            .unwrap();
    }
    let reference = image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgba8();
    let reference =
        RgbaFrame::new(reference.width(), reference.height(), reference.into_raw()).unwrap();
    for (who, out) in [("cpu", &on_cpu), ("software device", &on_gpu)] {
        let db = psnr(out, &reference);
        assert!(
            db >= SAME_DB,
            "{name}: {who} vs {} {db:.1} dB",
            path.display()
        );
    }
    assert!(
        psnr(input, &on_cpu) < 40.0,
        "{name}: the effect changed nothing visible"
    );
    on_cpu
}

/// The `w`×`h` top left corner of a frame.
fn top_left(input: &RgbaFrame, w: u32, h: u32) -> RgbaFrame {
    let img = image::RgbaImage::from_raw(input.width, input.height, input.pixels.clone()).unwrap();
    let img = image::imageops::crop_imm(&img, 0, 0, w, h).to_image();
    RgbaFrame::new(w, h, img.into_raw()).unwrap()
}

/// Whether every pixel farther than `margin` from all regions is unchanged.
fn untouched_outside(
    input: &RgbaFrame,
    output: &RgbaFrame,
    regions: &[Region],
    margin: f32,
) -> bool {
    let w = input.width as usize;
    input
        .pixels
        .chunks_exact(4)
        .zip(output.pixels.chunks_exact(4))
        .enumerate()
        .all(|(i, (a, b))| {
            let (x, y) = ((i % w) as f32 + 0.5, (i / w) as f32 + 0.5);
            let near = regions.iter().any(|r| {
                x > r.x - margin
                    && x < r.x + r.w + margin
                    && y > r.y - margin
                    && y < r.y + r.h + margin
            });
            near || a == b
        })
}

/// The astronaut's face in the half-size photo (256×256).
const FACE: Region = Region {
    x: 88.0,
    y: 28.0,
    w: 60.0,
    h: 72.0,
};

#[test]
fn gaussian_face_blur() {
    let input = fixture("astronaut");
    let effects = [Effect::Blur {
        regions: vec![FACE],
        style: BlurStyle::Gaussian { radius: 12.0 },
        feather: 6.0,
    }];
    let out = golden("face_blur_gaussian", &input, &effects);
    assert!(untouched_outside(&input, &out, &[FACE], 7.0));
}

#[test]
fn pixelated_face() {
    let input = fixture("astronaut");
    let effects = [Effect::Blur {
        regions: vec![FACE],
        style: BlurStyle::Pixelate { block: 10.0 },
        feather: 0.0,
    }];
    let out = golden("face_blur_pixelate", &input, &effects);
    assert!(untouched_outside(&input, &out, &[FACE], 1.0));
}

#[test]
fn highlighted_cup() {
    let input = fixture("coffee");
    let cup = Region {
        x: 60.0,
        y: 10.0,
        w: 170.0,
        h: 140.0,
    };
    let effects = [Effect::Highlight {
        regions: vec![cup],
        dim: 0.6,
        outline: 3.0,
        colour: [1.0, 0.8, 0.0, 1.0],
        feather: 10.0,
    }];
    golden("highlight", &input, &effects);
}

#[test]
fn warm_grade() {
    let input = fixture("chelsea");
    golden(
        "colour_grade_warm",
        &input,
        &[Effect::ColourGrade(Grade::look("warm").unwrap())],
    );
}

#[test]
fn grade_highlight_and_blur_in_one_frame() {
    let input = fixture("astronaut");
    let effects = [
        Effect::Blur {
            regions: vec![FACE],
            style: BlurStyle::Gaussian { radius: 20.0 },
            feather: 4.0,
        },
        Effect::Highlight {
            regions: vec![Region {
                x: 20.0,
                y: 120.0,
                w: 100.0,
                h: 100.0,
            }],
            dim: 0.4,
            outline: 2.0,
            colour: [0.0, 0.9, 1.0, 0.8],
            feather: 0.0,
        },
        Effect::ColourGrade(Grade::look("punchy").unwrap()),
    ];
    golden("combined", &input, &effects);
}

/// A frame size change between frames (textures and buffers are made again) and odd sizes
/// (rows not a multiple of 256 bytes) come out right.
#[test]
fn frame_sizes_change_between_frames() {
    let input = fixture("coffee");
    let effects = [Effect::ColourGrade(Grade::look("cool").unwrap())];
    let mut gpu = software().lock().unwrap();
    for (w, h) in [
        (input.width, input.height),
        (97, 61),
        (input.width, input.height),
    ] {
        let frame = top_left(&input, w, h);
        let (mut a, mut b) = (frame.clone(), frame.clone());
        gpu.render(&mut a, &effects::Plan::new(&effects, w, h))
            .unwrap();
        effects::Cpu::default().render(&mut b, &effects::Plan::new(&effects, w, h));
        assert!(psnr(&a, &b) >= SAME_DB, "{w}×{h}: {:.1} dB", psnr(&a, &b));
    }
}

/// PSNR in dB over the three planes of two same-sized YUV pictures.
fn yuv_psnr(a: &effects::Yuv420Frame, b: &effects::Yuv420Frame) -> f64 {
    assert_eq!((a.width, a.height), (b.width, b.height));
    let pairs = [(&a.y, &b.y), (&a.u, &b.u), (&a.v, &b.v)];
    let (sum, n) = pairs.iter().fold((0u64, 0usize), |(s, n), (x, y)| {
        let d: u64 = x
            .iter()
            .zip(y.iter())
            .map(|(p, q)| (*p as i64 - *q as i64).pow(2) as u64)
            .sum();
        (s + d, n + x.len())
    });
    if sum == 0 {
        return f64::INFINITY;
    }
    10.0 * (255.0f64 * 255.0 / (sum as f64 / n as f64)).log10()
}

/// The encoder's picture converted on the device (shaders/to_yuv.wgsl) is the CPU's rendering
/// converted on the CPU, at sizes whose rows are and are not a multiple of 256 bytes, across a
/// size change; an odd size is refused there and rendered as RGBA for the encoder instead.
#[test]
fn yuv_for_the_encoder_converted_on_the_device() {
    let input = fixture("astronaut");
    let effects = [
        Effect::Blur {
            regions: vec![FACE],
            style: BlurStyle::Pixelate { block: 10.0 },
            feather: 0.0,
        },
        Effect::ColourGrade(Grade::look("warm").unwrap()),
    ];
    let mut gpu = software().lock().unwrap();
    let mut on_device = effects::Yuv420Frame::default();
    for (w, h) in [(input.width, input.height), (98, 62), (input.width, 200)] {
        let frame = top_left(&input, w, h);
        let plan = effects::Plan::new(&effects, w, h);
        gpu.render_yuv(&frame, &plan, &mut on_device).unwrap();
        let mut rendered = frame.clone();
        effects::Cpu::default().render(&mut rendered, &plan);
        let mut on_cpu = effects::Yuv420Frame::default();
        on_cpu.from_rgba(&rendered).unwrap();
        let db = yuv_psnr(&on_device, &on_cpu);
        eprintln!("{w}×{h}: yuv on the device vs cpu {db:.1} dB");
        assert!(db >= SAME_DB, "{w}×{h}: {db:.1} dB");
        // Not the picture without its effects: the blur and grade are in it.
        let mut plain = effects::Yuv420Frame::default();
        plain.from_rgba(&frame).unwrap();
        assert!(yuv_psnr(&on_device, &plain) < 40.0, "{w}×{h}: no effect");
    }
    let odd = RgbaFrame::new(97, 61, vec![128; 97 * 61 * 4]).unwrap();
    let err = gpu
        .render_yuv(&odd, &effects::Plan::new(&effects, 97, 61), &mut on_device)
        .unwrap_err();
    assert!(err.to_string().contains("even width and height"), "{err}");
    drop(gpu);
    let mut software = Gpu::open(GpuKind::Software).unwrap();
    // A software device converts on the CPU by default (its passes run on the CPU too): the
    // hardware GPU's way is asked for here.
    assert!(!software.converts_yuv());
    software.set_converts_yuv(true);
    let mut renderer = Renderer::Gpu(Box::new(software));
    let mut frame = odd.clone();
    assert_eq!(
        renderer
            .render_for_encoder(&mut frame, &effects, &mut on_device)
            .unwrap(),
        effects::Rendered::Rgba
    );
    assert_ne!(frame, odd, "rendered in place");
    // Nothing to render: the frame goes to the encoder as it is, without a trip to the device.
    let mut even = RgbaFrame::new(98, 62, vec![90; 98 * 62 * 4]).unwrap();
    assert_eq!(
        renderer
            .render_for_encoder(&mut even, &[], &mut on_device)
            .unwrap(),
        effects::Rendered::Rgba
    );
    assert_eq!(
        renderer
            .render_for_encoder(&mut even, &effects, &mut on_device)
            .unwrap(),
        effects::Rendered::Yuv420
    );
    assert_eq!((on_device.width, on_device.height), (98, 62));
}

/// The decoder's I420, uploaded as it is and converted on the device (shaders/from_yuv.wgsl,
/// then the effects, then shaders/to_yuv.wgsl) is the CPU's: the same picture converted to RGBA
/// on the CPU, rendered there and converted back. A frame with nothing to render is handed on
/// as it came, and a CPU renderer converts it for its own rendering.
#[test]
fn i420_from_the_decoder_converted_on_the_device() {
    let input = fixture("astronaut");
    let effects = [
        Effect::Blur {
            regions: vec![FACE],
            style: BlurStyle::Gaussian { radius: 12.0 },
            feather: 6.0,
        },
        Effect::ColourGrade(Grade::look("cool").unwrap()),
    ];
    let mut gpu = software().lock().unwrap();
    let mut decoded = effects::Yuv420Frame::default();
    let mut on_device = effects::Yuv420Frame::default();
    for (w, h) in [(input.width, input.height), (98, 62)] {
        let frame = top_left(&input, w, h);
        decoded.from_rgba(&frame).unwrap();
        let i420 = [&decoded.y[..], &decoded.u[..], &decoded.v[..]].concat();
        let plan = effects::Plan::new(&effects, w, h);
        gpu.render_i420(w, h, &i420, &plan, &mut on_device).unwrap();
        let mut on_cpu = RgbaFrame::new(1, 1, vec![0; 4]).unwrap();
        on_cpu.set_i420(w, h, &i420).unwrap();
        // The round trip through YUV is close to the photo (chroma at half resolution).
        let trip = psnr(&on_cpu, &frame);
        assert!(trip > 30.0, "{w}×{h}: RGB → I420 → RGB {trip:.1} dB");
        effects::Cpu::default().render(&mut on_cpu, &plan);
        let mut expected = effects::Yuv420Frame::default();
        expected.from_rgba(&on_cpu).unwrap();
        let db = yuv_psnr(&on_device, &expected);
        eprintln!("{w}×{h}: I420 through the device vs cpu {db:.1} dB, round trip {trip:.1} dB");
        assert!(db >= SAME_DB, "{w}×{h}: {db:.1} dB");
    }
    assert!(
        gpu.render_i420(
            98,
            62,
            &[0; 10],
            &effects::Plan::new(&effects, 98, 62),
            &mut on_device
        )
        .is_err()
    );
    drop(gpu);
    let i420 = [&decoded.y[..], &decoded.u[..], &decoded.v[..]].concat();
    let mut scratch = RgbaFrame::new(1, 1, vec![0; 4]).unwrap();
    let mut software = Gpu::open(GpuKind::Software).unwrap();
    assert!(!Renderer::Gpu(Box::new(Gpu::open(GpuKind::Software).unwrap())).takes_i420());
    software.set_converts_yuv(true);
    let mut device = Renderer::Gpu(Box::new(software));
    assert!(device.takes_i420());
    assert_eq!(
        device
            .render_i420_for_encoder((98, 62, &i420), &mut scratch, &[], &mut on_device)
            .unwrap(),
        effects::Rendered::Decoded
    );
    let mut cpu = Renderer::Cpu(effects::Cpu::default());
    assert!(!cpu.takes_i420());
    assert_eq!(
        cpu.render_i420_for_encoder((98, 62, &i420), &mut scratch, &effects, &mut on_device)
            .unwrap(),
        effects::Rendered::Rgba
    );
    assert_eq!((scratch.width, scratch.height), (98, 62));
}
